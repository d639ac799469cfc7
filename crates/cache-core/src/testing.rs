//! The conformance suite (filled in by the in-memory backend work).
