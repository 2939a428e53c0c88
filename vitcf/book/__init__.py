"""The book wing: everything a page of the book reads, from run records to frames, charts and notes."""
