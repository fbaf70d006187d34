"""One router per file, each a thin call into the package."""
