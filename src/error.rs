//! The crate's error type, and the one place errors become RESP error
//! strings ([`Error::resp_message`]).
//!
//! Variants that a Redis client may match on carry Redis's exact wording;
//! shoal's own conditions use their own prefixes (`NOQUORUM`, `TRYAGAIN`).

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand { command: String, sub: String },
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR increment would produce NaN or Infinity")]
    NotFinite,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error("ERR invalid context")]
    InvalidContext,
    #[error("ERR too many siblings for key; resolve them with SETCTX")]
    TooManySiblings,
    #[error("ERR key is too long ({0} bytes; at most {max} bytes)", max = crate::storage::MAX_KEY_LEN)]
    KeyTooLong(usize),
    /// Any other client error, written in full (prefix included).
    #[error("{0}")]
    Command(String),
    #[error("NOQUORUM {needed} replicas needed, {got} answered")]
    NoQuorum { needed: usize, got: usize },
    #[error("TRYAGAIN {0}")]
    TryAgain(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A client error with Redis's generic `ERR` prefix.
    pub fn err(message: impl std::fmt::Display) -> Self {
        Self::Command(format!("ERR {message}"))
    }

    /// The error line sent to a client: one line, prefixed by an upper-case
    /// code as Redis clients expect.
    #[must_use]
    pub fn resp_message(&self) -> String {
        let text = match self {
            Self::Storage(_) | Self::Config(_) | Self::Io(_) => format!("ERR {self}"),
            Self::ShuttingDown => format!("TRYAGAIN {self}"),
            other => other.to_string(),
        };
        text.replace(['\r', '\n'], " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_wording_is_exact() {
        assert_eq!(Error::WrongArity("get".into()).resp_message(), "ERR wrong number of arguments for 'get' command");
        assert_eq!(
            Error::UnknownSubcommand { command: "CLIENT".into(), sub: "foo".into() }.resp_message(),
            "ERR unknown subcommand 'foo'. Try CLIENT HELP."
        );
        assert_eq!(Error::NoQuorum { needed: 2, got: 1 }.resp_message(), "NOQUORUM 2 replicas needed, 1 answered");
        assert_eq!(Error::Storage("disk\r\nfull".into()).resp_message(), "ERR storage failure: disk  full");
    }
}
