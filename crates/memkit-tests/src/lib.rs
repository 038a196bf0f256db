//! Helpers shared by memkit's integration tests (see `tests/`).
