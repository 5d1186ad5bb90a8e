//! Regression tests for the differences from Redis 7.0 that Redis's own
//! test suite (run against shoal as an external server) and a command by
//! command comparison with redis-server 7.0.15 found: INFO's CPU,
//! commandstats and errorstats sections and their counting rules, CLIENT
//! LIST's fields and filters, CONFIG GET's names, COMMAND LIST and INFO,
//! and a few replies and error texts. Expected replies are redis-server's.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};

use common::Shoal;
use common::reply::{array, call, err, int, ok, opt_text, text};
use redis::{Connection, Value};

/// The `field:value` lines of an INFO reply.
fn info(c: &mut Connection, sections: &[&str]) -> String {
    let mut cmd = redis::cmd("INFO");
    for s in sections {
        cmd.arg(*s);
    }
    text(&redis::ConnectionLike::req_command(c, &cmd).expect("INFO"))
}

fn fields(info: &str) -> HashMap<String, String> {
    info.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A `cmdstat_<name>` line's value, if the command has one.
fn cmdstat(c: &mut Connection, name: &str) -> Option<String> {
    fields(&info(c, &["commandstats"])).remove(&format!("cmdstat_{name}"))
}

/// The calls, rejected_calls and failed_calls of a `cmdstat_` line.
fn counts(line: &str) -> (u64, u64, u64) {
    let get = |key: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    (get("calls"), get("rejected_calls"), get("failed_calls"))
}

fn errorstat(c: &mut Connection, code: &str) -> Option<String> {
    fields(&info(c, &["errorstats"])).remove(&format!("errorstat_{code}"))
}

fn total_errors(c: &mut Connection) -> u64 {
    fields(&info(c, &["stats"]))["total_error_replies"].parse().expect("number")
}

#[test]
fn info_sections_as_redis_7_0() {
    let node = Shoal::start();
    let mut c = node.client();
    let titles =
        |info: &str| -> Vec<String> { info.lines().filter_map(|l| l.strip_prefix("# ")).map(str::to_string).collect() };
    let default = info(&mut c, &[]);
    assert_eq!(info(&mut c, &["default"]).lines().filter(|l| l.starts_with('#')).count(), titles(&default).len());
    for (section, present) in [("CPU", true), ("Modules", true), ("Errorstats", true), ("Commandstats", false)] {
        assert_eq!(titles(&default).contains(&section.to_string()), present, "default INFO and # {section}");
    }
    assert!(default.contains("used_cpu_user:") && default.contains("used_memory:"));
    assert!(!default.contains("rejected_calls"), "commandstats only when asked for");
    for every in ["all", "everything"] {
        let all = info(&mut c, &[every]);
        assert!(all.contains("rejected_calls") && all.contains("used_cpu_user:") && all.contains("redis_version:"));
        assert!(titles(&all).contains(&"Commandstats".to_string()), "INFO {every}");
    }
    let cpu = info(&mut c, &["cpu"]);
    assert_eq!(titles(&cpu), ["CPU"]);
    for field in ["used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"] {
        let value = &fields(&cpu)[field];
        let (secs, micros) = value.split_once('.').expect("seconds.micros");
        assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{field}:{value}");
    }
    assert!(info(&mut c, &["commandSTATS"]).contains("rejected_calls"), "section names ignore case");
    let combined = info(&mut c, &["cpu", "all"]);
    assert_eq!(combined.matches("used_cpu_user_children").count(), 1, "each section once");
    let cpu_default = info(&mut c, &["cpu", "default"]);
    assert!(cpu_default.contains("master_repl_offset") && !cpu_default.contains("rejected_calls"));
    assert_eq!(info(&mut c, &["sentinel"]), "");
    assert_eq!(fields(&info(&mut c, &["memory"]))["mem_allocator"], "mimalloc");
}

#[test]
fn commandstats_and_errorstats_count_as_redis_does() {
    let node = Shoal::start();
    let mut c = node.client();
    let reset = |c: &mut Connection| ok(&call!(c, "CONFIG", "RESETSTAT"));

    // A command that runs and fails.
    reset(&mut c);
    err(&call!(c, "AUTH", "k"));
    assert_eq!(counts(&cmdstat(&mut c, "auth").expect("cmdstat_auth")), (1, 0, 1));
    assert_eq!(errorstat(&mut c, "ERR").as_deref(), Some("count=1"));
    assert_eq!(total_errors(&mut c), 1);

    // Inside MULTI each queued command counts when EXEC runs it.
    reset(&mut c);
    ok(&call!(c, "MULTI"));
    call!(c, "SET", "a", "b");
    call!(c, "AUTH", "a");
    let replies = call!(c, "EXEC");
    assert_eq!(array(&replies).len(), 2);
    assert_eq!(counts(&cmdstat(&mut c, "set").expect("set")), (1, 0, 0));
    assert_eq!(counts(&cmdstat(&mut c, "auth").expect("auth")), (1, 0, 1));
    assert_eq!(counts(&cmdstat(&mut c, "exec").expect("exec")), (1, 0, 0));
    assert_eq!(counts(&cmdstat(&mut c, "multi").expect("multi")), (1, 0, 0));
    assert_eq!(errorstat(&mut c, "ERR").as_deref(), Some("count=1"));
    err(&call!(c, "EXEC"));
    assert_eq!(counts(&cmdstat(&mut c, "exec").expect("exec")), (2, 0, 1));

    // An unknown command counts as an error, under no command.
    reset(&mut c);
    err(&call!(c, "NOSUCHCOMMAND"));
    assert_eq!(errorstat(&mut c, "ERR").as_deref(), Some("count=1"));
    assert!(cmdstat(&mut c, "nosuchcommand").is_none());

    // A command refused while queueing is rejected, and EXEC aborts.
    reset(&mut c);
    ok(&call!(c, "MULTI"));
    err(&call!(c, "SET", "a"));
    let e = err(&call!(c, "EXEC"));
    assert!(e.starts_with("EXECABORT"), "{e}");
    assert_eq!(counts(&cmdstat(&mut c, "set").expect("set")), (0, 1, 0));
    assert_eq!(counts(&cmdstat(&mut c, "exec").expect("exec")), (1, 0, 1));
    assert_eq!(errorstat(&mut c, "ERR").as_deref(), Some("count=1"));
    assert_eq!(errorstat(&mut c, "EXECABORT").as_deref(), Some("count=1"));
    assert_eq!(total_errors(&mut c), 2);

    // Refused then run: both counted, the time too.
    reset(&mut c);
    err(&call!(c, "SET", "k"));
    ok(&call!(c, "SET", "k", "1"));
    ok(&call!(c, "SET", "k", "2"));
    let line = cmdstat(&mut c, "set").expect("set");
    assert_eq!(counts(&line), (2, 1, 0));
    assert!(line.contains(",usec=") && line.contains(",usec_per_call="), "{line}");

    // EXPIRE in the past deletes as EXPIRE, not as DEL.
    reset(&mut c);
    ok(&call!(c, "SET", "foo", "bar"));
    assert_eq!(int(&call!(c, "EXPIRE", "foo", 0)), 1);
    assert_eq!(counts(&cmdstat(&mut c, "expire").expect("expire")), (1, 0, 0));
    assert!(cmdstat(&mut c, "del").is_none());

    // Subcommands count on their own; errors by their code.
    reset(&mut c);
    call!(c, "CONFIG", "GET", "maxmemory");
    call!(c, "CLIENT", "ID");
    assert_eq!(counts(&cmdstat(&mut c, "config|get").expect("config|get")), (1, 0, 0));
    assert_eq!(counts(&cmdstat(&mut c, "client|id").expect("client|id")), (1, 0, 0));
    err(&call!(c, "CLIENT", "GETNAME", "extra"));
    assert_eq!(counts(&cmdstat(&mut c, "client|getname").expect("client|getname")), (0, 1, 0));
    err(&call!(c, "HELLO", "9"));
    assert_eq!(errorstat(&mut c, "NOPROTO").as_deref(), Some("count=1"));
}

/// Sends one raw request and reads one CLIENT LIST / INFO reply (a bulk
/// string) in full.
fn raw_bulk(s: &mut std::net::TcpStream, request: &[u8]) -> String {
    s.write_all(request).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((header, rest)) = text.split_once("\r\n") {
            let len: usize = header.trim_start_matches('$').parse().expect("bulk header");
            if rest.len() >= len + 2 {
                return rest[..len].to_string();
            }
        }
    }
}

#[test]
fn client_list_fields_and_filters() {
    let node = Shoal::start();
    let mut s = node.raw();
    let list = raw_bulk(&mut s, b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n");
    let line = list.lines().next().expect("one client");
    for field in ["flags=N", "multi=-1", "qbuf=26", "cmd=client|list", "redir=-1", "resp=2"] {
        assert!(line.split(' ').any(|f| f == field), "CLIENT LIST has {field}: {line}");
    }
    let own = raw_bulk(&mut s, b"CLIENT INFO\r\n");
    assert!(own.contains(" qbuf=13 ") && own.contains(" cmd=client|info "), "inline CLIENT INFO: {own}");

    // Another client, in MULTI with two commands queued.
    let mut other = node.client();
    let other_id = int(&call!(other, "CLIENT", "ID"));
    ok(&call!(other, "MULTI"));
    call!(other, "SET", "a", "1");
    call!(other, "GET", "a");
    let mut c = node.client();
    let list = text(&call!(c, "CLIENT", "LIST", "ID", other_id));
    assert_eq!(list.lines().count(), 1, "only the client asked for: {list}");
    assert!(
        list.contains(&format!("id={other_id} ")) && list.contains(" flags=x ") && list.contains(" multi=2 "),
        "{list}"
    );
    assert_eq!(text(&call!(c, "CLIENT", "LIST", "TYPE", "normal")).lines().count(), 3);
    assert_eq!(text(&call!(c, "CLIENT", "LIST", "TYPE", "pubsub")), "");
    assert_eq!(err(&call!(c, "CLIENT", "LIST", "TYPE", "foo")), "ERR Unknown client type 'foo'");
    assert_eq!(err(&call!(c, "CLIENT", "LIST", "ID", "abc")), "ERR Invalid client ID");
    assert_eq!(err(&call!(c, "CLIENT", "LIST", "foo")), "ERR syntax error");
    call!(other, "DISCARD");
}

#[test]
fn config_get_names_and_aliases() {
    let node = Shoal::start();
    let mut c = node.client();
    let get = |c: &mut Connection, args: &[&str]| -> Vec<(String, String)> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET");
        for a in args {
            cmd.arg(*a);
        }
        let reply = redis::ConnectionLike::req_command(c, &cmd).expect("CONFIG GET");
        let flat: Vec<String> = array(&reply).iter().map(text).collect();
        flat.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect()
    };
    assert_eq!(get(&mut c, &["maxmemory-policy"]), [("maxmemory-policy".into(), "noeviction".into())]);
    assert_eq!(get(&mut c, &["MAXMEMORY"]), [("MAXMEMORY".into(), "0".into())], "an exact name as given");
    let several = get(&mut c, &["maxmemory", "maxmemory*", "bind", "*of"]);
    let names: Vec<&str> = several.iter().map(|(n, _)| n.as_str()).collect();
    for name in
        ["maxmemory", "maxmemory-samples", "maxmemory-clients", "maxmemory-policy", "bind", "slaveof", "replicaof"]
    {
        assert_eq!(names.iter().filter(|n| **n == name).count(), 1, "{name} once in {names:?}");
    }
    // Every setting the README and INFO name, under shoal's name and Redis's.
    for name in [
        "n",
        "r",
        "w",
        "request-timeout",
        "maxclients",
        "proto-max-bulk-len",
        "client-query-buffer-limit",
        "requirepass",
        "partitions",
        "cache-size",
        "object-cache-size",
        "tombstone-grace",
        "max-siblings",
        "shutdown-timeout",
        "io-threads",
        "storage-threads",
        "bind",
        "port",
        "peer-port",
        "data-dir",
        "dir",
        "durability",
        "log-level",
        "loglevel",
        "seeds",
        "maxmemory",
    ] {
        assert_eq!(get(&mut c, &[name]).len(), 1, "CONFIG GET {name}");
    }
    assert_eq!(get(&mut c, &["dir"])[0].1, get(&mut c, &["data-dir"])[0].1);
    assert_eq!(get(&mut c, &["port"])[0].1, node.port.to_string());
    assert_eq!(err(&call!(c, "CONFIG", "SET")), "ERR wrong number of arguments for 'config|set' command");
    ok(&call!(c, "CONFIG", "SET", "save", ""));
    assert_eq!(
        err(&call!(c, "CONFIG", "SET", "maxmemory", "0", "MAXMEMORY", "0")),
        "ERR CONFIG SET failed (possibly related to argument 'MAXMEMORY') - duplicate parameter"
    );
    let e = err(&call!(c, "CONFIG", "SET", "maxmemory", "1"));
    assert!(e.starts_with("ERR CONFIG SET is not supported"), "{e}");
    assert_eq!(
        err(&call!(c, "CONFIG", "SET", "foo", "bar")),
        "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
    );
    assert!(!array(&call!(c, "CONFIG", "HELP")).is_empty());
}

#[test]
fn command_list_info_and_count() {
    let node = Shoal::start();
    let mut c = node.client();
    let names = |v: &Value| -> Vec<String> { array(v).iter().map(text).collect() };
    let all = names(&call!(c, "COMMAND", "LIST"));
    assert!(all.contains(&"set".to_string()) && all.contains(&"client|list".to_string()), "{all:?}");
    assert_eq!(names(&call!(c, "COMMAND", "LIST", "FILTERBY", "PATTERN", "set")), ["set"]);
    let config = names(&call!(c, "COMMAND", "LIST", "FILTERBY", "PATTERN", "config*"));
    assert!(config.contains(&"config".to_string()) && config.contains(&"config|get".to_string()), "{config:?}");
    assert!(names(&call!(c, "COMMAND", "LIST", "FILTERBY", "PATTERN", "non_exists*")).is_empty());
    assert!(names(&call!(c, "COMMAND", "LIST", "FILTERBY", "ACLCAT", "non_existing_category")).is_empty());
    assert!(names(&call!(c, "COMMAND", "LIST", "FILTERBY", "MODULE", "non_existing_module")).is_empty());
    let strings = names(&call!(c, "COMMAND", "LIST", "FILTERBY", "ACLCAT", "string"));
    assert!(strings.contains(&"get".to_string()) && !strings.contains(&"del".to_string()), "{strings:?}");
    for bad in [&["bad_arg"][..], &["FILTERBY", "bad_arg"], &["FILTERBY", "bad_arg", "bad_arg2"]] {
        let mut cmd = redis::cmd("COMMAND");
        cmd.arg("LIST").arg(bad);
        let reply = redis::ConnectionLike::req_command(&mut c, &cmd).expect("COMMAND LIST");
        assert_eq!(err(&reply), "ERR syntax error", "COMMAND LIST {bad:?}");
    }
    assert_eq!(err(&call!(c, "COMMAND", "COUNT", "x")), "ERR wrong number of arguments for 'command|count' command");
    let count = int(&call!(c, "COMMAND", "COUNT"));
    assert_eq!(array(&call!(c, "COMMAND", "INFO")).len() as i64, count, "COMMAND INFO with no names: all");
    let info = call!(c, "COMMAND", "INFO", "client|list", "get");
    let entries = array(&info);
    assert_eq!(text(&array(&entries[0])[0]), "client|list");
    let get = array(&entries[1]);
    let categories: Vec<String> = array(&get[6]).iter().map(text).collect();
    assert_eq!(categories, ["@read", "@string", "@fast"], "Redis's category order");
    let client = call!(c, "COMMAND", "INFO", "client");
    let subs = array(&array(&array(&client)[0])[9]);
    assert!(subs.iter().any(|s| text(&array(s)[0]) == "client|list"), "CLIENT lists its subcommands");
    assert!(!array(&call!(c, "COMMAND", "HELP")).is_empty());
}

#[test]
fn replies_and_errors_as_redis_gives_them() {
    let node = Shoal::start();
    let mut c = node.client();
    // GETEX checks the time only for a key that exists.
    for option in ["EX", "PX", "EXAT", "PXAT"] {
        for bad in ["0", "-1", "abc"] {
            assert_eq!(opt_text(&call!(c, "GETEX", "missing", option, bad)), None, "GETEX missing {option} {bad}");
        }
    }
    ok(&call!(c, "SET", "present", "v"));
    assert_eq!(err(&call!(c, "GETEX", "present", "EX", 0)), "ERR invalid expire time in 'getex' command");
    assert_eq!(err(&call!(c, "GETEX", "present", "EX", "abc")), "ERR value is not an integer or out of range");
    assert_eq!(err(&call!(c, "GETEX", "missing", "EX", 1, "PERSIST")), "ERR syntax error");
    // EXEC with arguments aborts the transaction, saying why.
    assert_eq!(
        err(&call!(c, "EXEC", "k")),
        "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"
    );
    ok(&call!(c, "MULTI"));
    err(&call!(c, "EXEC", "k"));
    assert_eq!(err(&call!(c, "EXEC")), "ERR EXEC without MULTI", "the transaction was discarded");
    // SCAN cursors as strtoul reads them.
    ok(&call!(c, "MSET", "a", "1", "b", "2"));
    let scan = |c: &mut Connection, cursor: &str| -> (String, usize) {
        let reply = call!(c, "SCAN", cursor, "COUNT", 1000);
        let parts = array(&reply);
        (text(&parts[0]), array(&parts[1]).len())
    };
    assert_eq!(scan(&mut c, "-1"), ("0".to_string(), 0));
    assert_eq!(scan(&mut c, ""), ("0".to_string(), 3));
    assert_eq!(err(&call!(c, "SCAN", " 1")), "ERR invalid cursor");
    // INCRBYFLOAT reads hexadecimal, and prints at most 17 decimals.
    assert_eq!(text(&call!(c, "INCRBYFLOAT", "f", "0x10")), "16");
    ok(&call!(c, "SET", "tiny", "1.5e-300"));
    assert_eq!(text(&call!(c, "INCRBYFLOAT", "tiny", 0)), "0");
}

#[test]
fn hello_before_auth_uses_the_7_0_wording() {
    let temp = tempfile::tempdir().expect("temp dir");
    let node = Shoal::spawn(&temp.path().join("data"), &[], &[("SHOAL_REQUIREPASS", "secret")]);
    let mut c = node.client();
    assert_eq!(
        err(&call!(c, "HELLO", 3)),
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> \
         <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
    );
}

#[test]
fn before_auth_the_name_and_arity_are_checked_first_as_redis_does() {
    let temp = tempfile::tempdir().expect("temp dir");
    let node = Shoal::spawn(&temp.path().join("data"), &[], &[("SHOAL_REQUIREPASS", "secret")]);
    let mut c = node.client();
    assert_eq!(err(&call!(c, "GET")), "ERR wrong number of arguments for 'get' command");
    assert_eq!(err(&call!(c, "CLIENT", "NOSUCH")), "ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.");
    assert_eq!(err(&call!(c, "CONFIG", "GET")), "ERR wrong number of arguments for 'config|get' command");
    assert_eq!(err(&call!(c, "GET", "k")), "NOAUTH Authentication required.");
    assert_eq!(err(&call!(c, "EXEC")), "EXECABORT Transaction discarded because of: NOAUTH Authentication required.");
    ok(&call!(c, "AUTH", "secret"));
    // Any integer is a client id; a negative one lists nobody.
    assert_eq!(text(&call!(c, "CLIENT", "LIST", "ID", "-1")), "");
    assert_eq!(err(&call!(c, "CLIENT", "LIST", "ID", "x")), "ERR Invalid client ID");
}
