"""SubmissionSets: the List that groups the documents of one ITI-65 submission."""
