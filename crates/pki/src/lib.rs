//! What a petset server and its agents both need to trust each other from the first byte:
//! the join token and its CA pin, the certificate requests an agent makes and the server
//! signs, the TLS configurations built from the resulting PEMs, and the reader of a
//! certificate's subject (who a client certificate says it is).

pub mod subject;

pub use subject::{Subject, common_name, organizations, subject};
