//! Bounded controller work: a StatefulSet of any valid size never takes the server down.
