//! XEP-0198 across members (filled in below).
