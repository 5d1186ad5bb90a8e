//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, CLIENT.

use std::sync::PoisonError;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::resp::args::Args;
use crate::resp::commands::is;
use crate::resp::reply::Reply;
use crate::resp::session::Session;

/// The Redis version shoal answers as, for clients that check it.
pub const REDIS_VERSION: &str = "7.0.15";

pub async fn ping(_: &Session, mut args: Args) -> Result<Reply> {
    match (args.next(), args.remaining()) {
        (None, _) => Ok(Reply::simple("PONG")),
        (Some(msg), 0) => Ok(Reply::Bulk(msg)),
        _ => Err(Error::WrongArity("ping".into())),
    }
}

pub async fn echo(_: &Session, mut args: Args) -> Result<Reply> {
    Ok(Reply::Bulk(args.bytes()?))
}

/// Checks a user name and password against the configuration. Without a
/// password configured, the default user takes any password, as in Redis.
fn check_password(s: &Session, user: &[u8], pass: &[u8]) -> Result<()> {
    if !is(user, "default") {
        return Err(Error::WrongPass);
    }
    match &s.server.config.requirepass {
        Some(expected) if expected.as_bytes() != pass => Err(Error::WrongPass),
        _ => Ok(()),
    }
}

pub async fn auth(s: &mut Session, args: Args) -> Result<Reply> {
    let args = args.rest();
    let (user, pass) = match args.as_slice() {
        [pass] => {
            if s.server.config.requirepass.is_none() {
                return Err(Error::err(
                    "AUTH <password> called without any password configured for the default user. \
                     Are you sure your configuration is correct?",
                ));
            }
            (Bytes::from_static(b"default"), pass.clone())
        }
        [user, pass] => (user.clone(), pass.clone()),
        _ => return Err(Error::Syntax),
    };
    check_password(s, &user, &pass)?;
    s.authenticated = true;
    Ok(Reply::OK)
}

/// Client names are printable ASCII without spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn set_name(s: &Session, name: Bytes) -> Result<()> {
    if !valid_name(&name) {
        return Err(Error::err("Client names cannot contain spaces, newlines or special characters."));
    }
    *s.client.name.lock().unwrap_or_else(PoisonError::into_inner) = name;
    Ok(())
}

pub async fn hello(s: &mut Session, mut args: Args) -> Result<Reply> {
    let mut resp3 = s.resp3;
    if let Some(version) = args.next() {
        match crate::mutation::parse_i64(&version) {
            Some(2) => resp3 = false,
            Some(3) => resp3 = true,
            Some(_) => return Err(Error::NoProto),
            None => return Err(Error::err("Protocol version is not an integer or out of range")),
        }
    }
    let mut name = None;
    let mut authenticated = s.authenticated;
    while let Some(option) = args.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"AUTH" if args.remaining() >= 2 => {
                let (user, pass) = (args.bytes()?, args.bytes()?);
                check_password(s, &user, &pass)?;
                authenticated = true;
            }
            b"SETNAME" if args.remaining() >= 1 => name = Some(args.bytes()?),
            _ => {
                let option = String::from_utf8_lossy(&option);
                return Err(Error::err(format!("Syntax error in HELLO option '{option}'")));
            }
        }
    }
    if !authenticated {
        return Err(Error::Command(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> \
             <pass> option can be used to authenticate the client and select the RESP protocol version at the same \
             time"
                .into(),
        ));
    }
    if let Some(name) = name {
        set_name(s, name)?;
    }
    s.authenticated = true;
    s.set_resp3(resp3);
    Ok(Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
        (Reply::bulk("proto"), Reply::Int(if resp3 { 3 } else { 2 })),
        (Reply::bulk("id"), Reply::Int(s.client.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(vec![])),
    ]))
}

pub async fn select(_: &Session, mut args: Args) -> Result<Reply> {
    match args.int()? {
        0 => Ok(Reply::OK),
        _ => Err(Error::DbIndexOutOfRange),
    }
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "LIST",
    "    Return information about client connections.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
];

/// CLIENT LIST's filter: `TYPE type` or `ID id…`, as Redis parses them.
/// `None` lists every client; `Some(ids)` only those (none for a type no
/// shoal client has).
fn list_filter(args: Vec<Bytes>) -> Result<Option<Vec<u64>>> {
    match args.as_slice() {
        [] => Ok(None),
        [option, kind] if is(option, "type") => match String::from_utf8_lossy(kind).to_ascii_lowercase().as_str() {
            "normal" => Ok(None),
            "master" | "replica" | "slave" | "pubsub" => Ok(Some(Vec::new())),
            _ => Err(Error::err(format!("Unknown client type '{}'", String::from_utf8_lossy(kind)))),
        },
        // Any integer is an id (a negative one matches no client).
        [option, ids @ ..] if is(option, "id") && !ids.is_empty() => ids
            .iter()
            .map(|id| crate::mutation::parse_i64(id).ok_or_else(|| Error::err("Invalid client ID")))
            .collect::<Result<Vec<i64>>>()
            .map(|ids| Some(ids.into_iter().filter_map(|n| u64::try_from(n).ok()).collect())),
        _ => Err(Error::Syntax),
    }
}

pub async fn client(s: &Session, mut args: Args) -> Result<Reply> {
    let raw = args.next().unwrap_or_default();
    let sub = String::from_utf8_lossy(&raw).to_ascii_uppercase();
    let arity = |ok: bool| {
        if ok { Ok(()) } else { Err(Error::WrongArity(format!("client|{}", sub.to_ascii_lowercase()))) }
    };
    match sub.as_str() {
        "SETNAME" => {
            arity(args.remaining() == 1)?;
            set_name(s, args.bytes()?)?;
            Ok(Reply::OK)
        }
        "GETNAME" => {
            arity(args.remaining() == 0)?;
            let name = s.client.name.lock().unwrap_or_else(PoisonError::into_inner).clone();
            Ok(if name.is_empty() { Reply::Nil } else { Reply::Bulk(name) })
        }
        "ID" => {
            arity(args.remaining() == 0)?;
            Ok(Reply::Int(s.client.id as i64))
        }
        "SETINFO" => {
            arity(args.remaining() == 2)?;
            let attr = args.keyword().unwrap_or_default();
            let value = String::from_utf8_lossy(&args.bytes()?).into_owned();
            if !valid_name(value.as_bytes()) && !value.is_empty() {
                return Err(Error::err(format!("{attr} cannot contain spaces, newlines or special characters.")));
            }
            let mut lib = s.client.lib.lock().unwrap_or_else(PoisonError::into_inner);
            match attr.as_str() {
                "LIB-NAME" => lib.0 = value,
                "LIB-VER" => lib.1 = value,
                _ => return Err(Error::err(format!("Unrecognized option '{attr}'"))),
            }
            Ok(Reply::OK)
        }
        "LIST" => {
            let wanted = list_filter(args.rest())?;
            let lines: String = s
                .server
                .clients
                .all()
                .iter()
                .filter(|c| wanted.as_ref().is_none_or(|ids| ids.contains(&c.id)))
                .map(|c| c.describe() + "\n")
                .collect();
            Ok(Reply::Verbatim("txt", lines))
        }
        "INFO" => {
            arity(args.remaining() == 0)?;
            Ok(Reply::Verbatim("txt", s.client.describe() + "\n"))
        }
        "HELP" => Ok(Reply::Array(CLIENT_HELP.iter().map(|l| Reply::simple(l)).collect())),
        _ => Err(Error::UnknownSubcommand { command: "CLIENT".into(), sub: String::from_utf8_lossy(&raw).into() }),
    }
}
