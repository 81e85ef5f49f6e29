//! Who a client is and what it may do: the configured users and their password checks
//! ([`users`]), the Redis ACL rules a command line is checked against ([`acl`]), and the ACL
//! user a restricted client's scripts run as on the nodes ([`identity`]). Pure:
//! no I/O and no session state; the gate a session runs every command through is
//! `session::gate`.

pub mod acl;
pub mod identity;
pub mod users;
