"""Operator verbs (shift, shadow, promote, rollback) as policy edits, with their history and audit log."""
