"""The domain: pure rules of a case (no I/O), read by every door, page, filter and metric."""
