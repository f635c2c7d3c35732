//! Store battery.
