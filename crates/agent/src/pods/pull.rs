//! A container's image from the node's store, retried as the kubelet retries a pull when it
//! is not there: `ErrImagePull` at each attempt, `ImagePullBackOff` between attempts (the
//! back-off is `super::lifecycle::next_pull_delay`), so a pod starts once its image has been
//! imported.

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use petset_runtime::images::Image;
use tokio::time::Instant;

use super::lifecycle::next_pull_delay;
use super::worker::{PodRun, Waiting};
use crate::kubelet_events::{self as events, ContainerOf, reason};

/// An image the node could not find, retried with a back-off as the kubelet retries pulls.
#[derive(Debug, Clone)]
pub(super) struct PullBackOff {
    delay: Duration,
    until: Instant,
    error: String,
}

impl PodRun {
    pub(super) fn image_of(&mut self, container: &Container, init: bool) -> Result<Image, Waiting> {
        let reference = container.image.clone().unwrap_or_default();
        let of = Some(ContainerOf {
            name: &container.name,
            init,
        });
        let now = Instant::now();
        let waiting = |reason: &str, message: String| Waiting {
            reason: reason.into(),
            message: Some(message),
            container: Some(container.name.clone()),
        };
        if let Some(back_off) = self.pulls.get(&reference)
            && now < back_off.until
        {
            let message = events::back_off_pulling(&reference);
            self.event(of, events::NORMAL, reason::BACK_OFF, message);
            let message = events::error("ImagePullBackOff");
            self.event(of, events::WARNING, reason::FAILED, message);
            return Err(waiting(
                "ImagePullBackOff",
                events::back_off_pulling_status(&reference, &back_off.error),
            ));
        }
        match self.shared.runtime.image(&reference) {
            Ok(image) => {
                self.pulls.remove(&reference);
                Ok(image)
            }
            Err(error) => {
                let error = format!(
                    "failed to pull and unpack image \"{reference}\": {error} (this node pulls from no registry; import it with petset image import)"
                );
                let message = events::failed_to_pull(&reference, &error);
                self.event(of, events::WARNING, reason::FAILED, message);
                let message = events::error("ErrImagePull");
                self.event(of, events::WARNING, reason::FAILED, message);
                let delay = next_pull_delay(self.pulls.get(&reference).map(|b| b.delay));
                self.pulls.insert(
                    reference.clone(),
                    PullBackOff {
                        delay,
                        until: now + delay,
                        error: error.clone(),
                    },
                );
                Err(waiting("ErrImagePull", error))
            }
        }
    }
}
