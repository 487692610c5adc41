"""What the two HTTP surfaces share: the FHIR API and the patient's space (vault/api,
vault/web) both reach the services and end their transactions through here."""
