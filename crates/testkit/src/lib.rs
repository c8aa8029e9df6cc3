//! tk
