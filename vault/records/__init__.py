"""A record over a lifetime (docs/lifecycle.md): closing it, deleting it (early, or at the
end of the retention period, by crypto-shredding), reopening it, and a person's opposition
to the creation of theirs."""
