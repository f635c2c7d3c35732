//! Local-path volumes are made and removed by the node that uses them.
