//! The strategy of a plain stored object: no spec (so no generation), no status of its own,
//! no rules beyond everyone's metadata rules.

use crate::kinds::Strategy;

pub struct Generic;

impl Strategy for Generic {}
