//! The built-in mock model.
