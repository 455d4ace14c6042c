//! Receiving request bodies without letting clients hold the process: each body has a deadline,
//! and all bodies being received share one memory budget. A body that says its length reserves
//! all of it before the first byte is read, so two large uploads never each hold half of the
//! budget while waiting for the other; one without a length reserves chunk by chunk.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::GatewayError;

/// Budget units are KiB, so that budgets of many GiB fit the semaphore's `u32` permits.
const UNIT: usize = 1024;

/// The memory all proxies together may hold in request bodies being received.
#[derive(Debug)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    mib: u64,
}

impl BodyBudget {
    pub fn new(mib: u64) -> Self {
        let units = usize::try_from(mib.saturating_mul(1024)).unwrap_or(usize::MAX);
        BodyBudget {
            permits: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            mib,
        }
    }

    /// Takes `bytes` of the budget at once, or fails without waiting.
    fn reserve(&self, bytes: usize) -> Result<Reservation, GatewayError> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        Arc::clone(&self.permits)
            .try_acquire_many_owned(units)
            .map(|permit| Reservation(Some(permit)))
            .map_err(|_| GatewayError::Overloaded { mib: self.mib })
    }
}

/// A body's share of the budget, given back when the request is done with it.
#[derive(Debug, Default)]
pub struct Reservation(Option<OwnedSemaphorePermit>);

impl Reservation {
    fn merge(&mut self, more: Reservation) {
        match (&mut self.0, more.0) {
            (Some(held), Some(more)) => held.merge(more),
            (held @ None, more) => *held = more,
            (Some(_), None) => {}
        }
    }
}

/// How a proxy receives request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
    pub budget: Arc<BodyBudget>,
}

/// Reads a whole request body within the limits; `declared` is its `Content-Length`.
pub async fn receive(
    payload: web::Payload,
    declared: Option<usize>,
    limits: &BodyLimits,
) -> Result<(Bytes, Reservation), GatewayError> {
    if declared.is_some_and(|length| length > limits.max_bytes) {
        return Err(GatewayError::BodyTooLarge {
            limit: limits.max_bytes,
        });
    }
    let mut reservation = match declared {
        Some(length) => limits.budget.reserve(length)?,
        None => Reservation::default(),
    };
    let read = read(payload, declared.is_none(), limits, &mut reservation);
    match tokio::time::timeout(limits.timeout, read).await {
        Ok(body) => Ok((body?, reservation)),
        Err(_) => Err(GatewayError::BodyTimeout {
            seconds: limits.timeout.as_secs(),
        }),
    }
}

async fn read(
    mut payload: web::Payload,
    reserve_as_it_comes: bool,
    limits: &BodyLimits,
    reservation: &mut Reservation,
) -> Result<Bytes, GatewayError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limits.max_bytes {
            return Err(GatewayError::BodyTooLarge {
                limit: limits.max_bytes,
            });
        }
        if reserve_as_it_comes {
            reservation.merge(limits.budget.reserve(chunk.len())?);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
