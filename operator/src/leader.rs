//! Leader election with a coordination.k8s.io Lease: one replica runs the
//! controllers, the others wait to take over. The decision is pure
//! ([`decide`]); [`LeaderElection`] does the API calls, with the Lease's
//! resourceVersion guarding against two replicas taking it at once.
//!
//! Ours rather than a crate's, because that guard is the point: the two
//! Lease crates that build with kube 4 take an expired Lease without it.
//! kube-leader-election 0.44 acquires with a merge patch and no
//! precondition, so two standbys can both "acquire" the same expired Lease;
//! kube-lease-manager 0.12 first clears an expired holder with an
//! unconditional strategic-merge patch, so a standby acting on a stale read
//! can wipe a fresh holder (it only sleeps a random moment to make that
//! rarer). kube-lease-manager 0.13 needs kube 5. Replacing with the read
//! resourceVersion, as client-go's leader election does, lets exactly one win.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Fires when this replica stops being the leader.
pub type LostLeadership = CancellationToken;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews (well within `duration`).
    pub renew_every: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it until then.
    Follow { holder: String, until: Timestamp },
}

/// What this replica should do about the lease, at `now`.
pub fn decide(
    lease: Option<&Lease>,
    me: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(default_duration);
    let until = renewed
        .checked_add(jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    if until <= now {
        Decision::Acquire
    } else {
        Decision::Follow { holder, until }
    }
}

/// The lease as this replica writes it.
fn ours(
    settings: &LeaseSettings,
    previous: Option<&Lease>,
    acquiring: bool,
    now: Timestamp,
) -> Lease {
    let old = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(settings.identity.clone()),
            lease_duration_seconds: Some(settings.duration.as_secs() as i32),
            acquire_time: if acquiring {
                Some(MicroTime(now))
            } else {
                old.acquire_time
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(old.lease_transitions.unwrap_or(0) + i32::from(acquiring)),
            ..LeaseSpec::default()
        }),
    }
}

pub struct LeaderElection {
    api: Api<Lease>,
    settings: LeaseSettings,
}

impl LeaderElection {
    pub fn new(client: Client, settings: LeaseSettings) -> LeaderElection {
        LeaderElection {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    /// One attempt: true if we hold the lease afterwards.
    async fn try_hold(&self) -> kube::Result<bool> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.settings.name).await?;
        let decision = decide(
            current.as_ref(),
            &self.settings.identity,
            now,
            self.settings.duration,
        );
        let lease = match &decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Acquire => ours(&self.settings, current.as_ref(), true, now),
            Decision::Renew => ours(&self.settings, current.as_ref(), false, now),
        };
        let written = match &current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => {
                if decision == Decision::Acquire {
                    tracing::info!(identity = %self.settings.identity, lease = %self.settings.name, "became the leader");
                }
                Ok(true)
            }
            // Another replica wrote first: not ours this time.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads, then keeps renewing in the
    /// background; the returned token fires if leadership is lost (the
    /// caller then stops, and a restarted replica competes again).
    pub async fn lead(self) -> LostLeadership {
        loop {
            match self.try_hold().await {
                Ok(true) => break,
                Ok(false) => tracing::debug!("another replica leads; waiting"),
                Err(e) => tracing::warn!(error = %e, "cannot read or write the leader Lease"),
            }
            tokio::time::sleep(self.settings.renew_every).await;
        }
        let lost = LostLeadership::default();
        let signal = lost.clone();
        tokio::spawn(async move {
            let mut last_renewal = std::time::Instant::now();
            loop {
                tokio::time::sleep(self.settings.renew_every).await;
                match self.try_hold().await {
                    Ok(true) => last_renewal = std::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!("lost the leader Lease to another replica; stopping");
                        signal.cancel();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew the leader Lease");
                        if last_renewal.elapsed() >= self.settings.duration {
                            tracing::error!("the leader Lease expired without renewal; stopping");
                            signal.cancel();
                            return;
                        }
                    }
                }
            }
        });
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_missing_or_expired_lease_is_taken_and_a_live_one_followed() {
        let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        assert_eq!(decide(None, "a", now, D), Decision::Acquire);
        assert_eq!(
            decide(Some(&lease("a", "2026-11-21T11:59:55Z", 15)), "a", now, D),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease("b", "2026-11-21T11:59:55Z", 15)), "a", now, D),
            Decision::Follow {
                holder: "b".into(),
                until: "2026-11-21T12:00:10Z".parse().unwrap()
            }
        );
        assert_eq!(
            decide(Some(&lease("b", "2026-11-21T11:59:40Z", 15)), "a", now, D),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease("", "2026-11-21T11:59:59Z", 15)), "a", now, D),
            Decision::Acquire
        );
    }

    #[test]
    fn taking_a_lease_counts_a_transition_and_renewing_does_not() {
        let settings = LeaseSettings {
            namespace: "ops".into(),
            name: "innoxide-operator".into(),
            identity: "a".into(),
            duration: D,
            renew_every: Duration::from_secs(5),
        };
        let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        let taken = ours(
            &settings,
            Some(&lease("b", "2026-11-21T11:00:00Z", 15)),
            true,
            now,
        );
        let spec = taken.spec.clone().unwrap();
        assert_eq!(
            (spec.holder_identity.as_deref(), spec.lease_transitions),
            (Some("a"), Some(1))
        );
        let renewed = ours(&settings, Some(&taken), false, now);
        assert_eq!(renewed.spec.unwrap().lease_transitions, Some(1));
    }
}
