"""The FHIR R4 wire layer: parsing, validation against fhir.resources (R4B) and the
IHE MHD / ANS PDSm rules, OperationOutcome rendering. No HTTP framework in here."""
