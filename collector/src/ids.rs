//! Typed identifiers, so a `HostId` can never be passed where a `SiteId` is meant, nor an
//! outbox id where an incident id is. The tenancy model (customer → site → host) uses UUIDs
//! assigned by the collector; a host's ID is never derived from anything the agent says about
//! itself (two customers both have an `srv01`). Incidents, their timeline entries, outbox items
//! and deliveries are numbered by the store in the order they are written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random ID.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// A customer of the vendor: owns sites and a contract.
    CustomerId
);
typed_id!(
    /// A location of one customer; hosts belong to exactly one site.
    SiteId
);
typed_id!(
    /// A monitored machine, assigned by the collector at registration or enrolment.
    HostId
);

macro_rules! serial_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(n: i64) -> Self {
                Self(n)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

serial_id!(
    /// An incident; shown to people as its number, `INC-000042`.
    IncidentId
);
serial_id!(
    /// One entry of an incident's timeline.
    TimelineId
);
serial_id!(
    /// A notifiable incident change waiting to be fanned out to receivers.
    OutboxId
);
serial_id!(
    /// One delivery of one incident change to one receiver.
    DeliveryId
);
