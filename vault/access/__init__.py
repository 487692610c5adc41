"""Who is calling (principals, tokens, scopes) and what they may do (the decision point)."""
