//! The built-in regex sources: one file each, registered in [`ALL`]. Each
//! file's tests hold lines in the shapes the program writes (its source or
//! documentation), with client text planted where the client writes.
//! `tests/fail2ban_corpus.rs` runs fail2ban's annotated lines through them.

pub use rule::{Builtin, BuiltinRule};

mod dovecot;
mod mariadb;
mod nginx_http_auth;
mod nginx_limit_req;
mod postfix_sasl;
mod proftpd;
mod vsftpd;

#[cfg(test)]
mod check;
mod rule;

/// Every built-in source: one line each.
pub const ALL: &[&Builtin] = &[
    &postfix_sasl::SOURCE,
    &dovecot::SOURCE,
    &vsftpd::SOURCE,
    &proftpd::SOURCE,
    &mariadb::SOURCE,
    &nginx_limit_req::SOURCE,
    &nginx_http_auth::SOURCE,
];
