//! The HTTP API: which endpoint answers what, and who may call it.
//!
//! A request from [`crate::server`] goes through [`routes`] (the route
//! table: admission of the caller, the body and the thread class, then the
//! run, with metrics and the audit record) to one thin endpoint function,
//! which checks the names it was given, calls the store and answers.
//!
//! The endpoints, by area:
//! - [`nodes`]: `POST`/`GET /api/v1/keepalive` (with [`enroll`] for the
//!   enrollment token), `GET /api/v1/nodes` (paged or streamed),
//!   `GET`/`DELETE /api/v1/nodes/{id}`, `DELETE /api/v1/nodes/{id}/secret`,
//!   `PUT`/`DELETE /api/v1/nodes/{id}/pins/{bin}`.
//! - [`fleet`]: `GET /api/v1/fleet` (the fleet counted: online, per arch,
//!   per bin and version) and the node search of `GET /api/v1/nodes`.
//! - [`bins`]: `GET`/`POST /api/v1/bins/{bin}` (target, installed),
//!   `GET`/`POST /api/v1/bins/{bin}/progress`, `GET /api/v1/download/{name}`,
//!   `GET /api/v1/bins`, `GET`/`POST /api/v1/bins/{bin}/versions` (list,
//!   upload), `DELETE /api/v1/bins/{bin}/versions/{version}`,
//!   `PUT /api/v1/bins/{bin}/versions/{version}/signature`.
//! - [`releases`]: `GET`/`POST /api/v1/releases`, `GET /api/v1/releases/{id}`,
//!   `GET /api/v1/releases/{id}/failures`, `POST /api/v1/releases/{id}/{op}`.
//! - [`access`]: `GET`/`POST /api/v1/tokens`, `DELETE /api/v1/tokens/{name}`,
//!   `GET /api/v1/audit`; who a caller is lives in [`auth`], the audit
//!   records are written by [`audit`].
//! - [`health`]: `GET /health`; [`metrics`]: `GET /metrics`. The admin page
//!   (`/`, `/ui/*`) is [`crate::page`], the backup archive
//!   (`GET /api/v1/backup`) [`crate::backup`].
//!
//! What every endpoint shares: [`app::App`] (the state), [`request`] (the
//! request, URLs, bounded bodies) and [`reply`] (replies, `ApiError`, byte
//! ranges). The dependency direction is one way: `routes` → endpoint
//! files → `app`, `request`, `reply`, `auth`, `audit` → store, rollout;
//! the shared files never import an endpoint file.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bins;
pub mod enroll;
pub mod fleet;
pub mod health;
pub mod metrics;
pub mod nodes;
pub mod releases;
pub mod reply;
pub mod request;
pub mod routes;
