//! Who a request writes as, carried from the guard to the registry the way upstream's request
//! context carries its user: the registry's escalation check (`escalation.rs`) needs the
//! requester where the final object is known, deep inside a patch's retry loop. Calls that no
//! network request started (the in-process controllers, the bootstrap) carry no requester and
//! are the API server's own.

use std::future::Future;

use super::UserInfo;

tokio::task_local! {
    static REQUESTER: UserInfo;
}

/// Runs `work` (a request's handling) as `user`.
pub async fn acting_as<F: Future>(user: UserInfo, work: F) -> F::Output {
    REQUESTER.scope(user, work).await
}

/// The user the current request is handled for; `None` outside a network request.
pub fn current() -> Option<UserInfo> {
    REQUESTER.try_with(UserInfo::clone).ok()
}
