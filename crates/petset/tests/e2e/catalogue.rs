//! A kind added through the catalogue alone is served everywhere kubectl looks.
