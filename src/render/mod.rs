//! PNG rendering (owned by render work).
