//! The MessagePack hub protocol, version 1: each message is a MessagePack array
//! (`[type, headers, ...]`) behind its length as a variable-length integer (7 bits a byte,
//! low bits first, at most 5 bytes), in binary frames. The payloads are the JSON
//! protocol's objects as MessagePack maps (dates stay ISO 8601 strings).

use super::protocol::{sequence_id, tracked_type, Broken, HubMessage, HubProtocol, Outgoing};
use crate::actors::hub::Frame;
use rmpv::Value as Mp;
use serde_json::Value;
use std::collections::VecDeque;

pub struct MessagePack;

impl HubProtocol for MessagePack {
    fn name(&self) -> &'static str {
        "messagepack"
    }

    fn slot(&self) -> usize {
        2
    }

    fn binary(&self) -> bool {
        true
    }

    fn read(&self, buf: &mut Vec<u8>, max: usize, out: &mut VecDeque<HubMessage>) -> Result<(), Broken> {
        let mut start = 0;
        while let Some((len, prefix)) = length(&buf[start..])? {
            if len > max {
                return Err(Broken::TooLarge);
            }
            let body = start + prefix;
            if buf.len() < body + len {
                break;
            }
            out.push_back(decode(&buf[body..body + len])?);
            start = body + len;
        }
        buf.drain(..start);
        if buf.len() > max + 5 {
            return Err(Broken::TooLarge);
        }
        Ok(())
    }

    fn write(&self, msg: &Outgoing<'_>) -> Frame {
        let headers = || Mp::Map(Vec::new());
        let v = match *msg {
            Outgoing::Invocation { target, argument } => {
                Mp::Array(vec![1.into(), headers(), Mp::Nil, target.into(), Mp::Array(vec![to_mp(argument)])])
            }
            // The result kind: 1 an error, 2 void, 3 a result.
            Outgoing::Completion { id, outcome: Err(e) } => {
                Mp::Array(vec![3.into(), headers(), id.into(), 1.into(), e.into()])
            }
            Outgoing::Completion { id, outcome: Ok(None) } => Mp::Array(vec![3.into(), headers(), id.into(), 2.into()]),
            Outgoing::Completion { id, outcome: Ok(Some(result)) } => {
                Mp::Array(vec![3.into(), headers(), id.into(), 3.into(), to_mp(result)])
            }
            Outgoing::Ping => Mp::Array(vec![6.into()]),
            Outgoing::Close { error, allow_reconnect } => {
                Mp::Array(vec![7.into(), error.into(), allow_reconnect.into()])
            }
            Outgoing::Ack { id } => Mp::Array(vec![8.into(), id.into()]),
            Outgoing::Sequence { id } => Mp::Array(vec![9.into(), id.into()]),
        };
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &v).expect("writing to a Vec cannot fail");
        let mut framed = Vec::with_capacity(body.len() + 5);
        let mut n = body.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                framed.push(b);
                break;
            }
            framed.push(b | 0x80);
        }
        framed.extend_from_slice(&body);
        Frame::binary(&framed)
    }
}

/// The length prefix at the start of `bytes`: (length, prefix size), or `None` while it is
/// still arriving.
fn length(bytes: &[u8]) -> Result<Option<(usize, usize)>, Broken> {
    let mut len = 0usize;
    for (i, b) in bytes.iter().enumerate().take(5) {
        len |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((len, i + 1)));
        }
    }
    if bytes.len() >= 5 {
        return Err(Broken::Invalid("Invalid message: the length prefix is longer than 5 bytes.".into()));
    }
    Ok(None)
}

fn invalid(what: &str) -> Broken {
    Broken::Invalid(format!("Invalid message: {what}"))
}

fn decode(mut body: &[u8]) -> Result<HubMessage, Broken> {
    let v = rmpv::decode::read_value(&mut body).map_err(|e| invalid(&e.to_string()))?;
    let Mp::Array(items) = v else { return Err(invalid("a message is an array.")) };
    let kind = items.first().and_then(Mp::as_u64).ok_or_else(|| invalid("its first item is its type."))?;
    let id = || match items.get(2) {
        Some(Mp::String(s)) => s.as_str().map(str::to_string),
        _ => None,
    };
    Ok(match kind {
        1 => {
            let call = match (items.get(3).and_then(Mp::as_str), items.get(4)) {
                (None, _) => Err("Invalid invocation: 'target' is required.".to_string()),
                (Some(t), Some(Mp::Array(a))) => Ok((t.to_string(), a.iter().map(to_json).collect())),
                (Some(t), None | Some(Mp::Nil)) => Ok((t.to_string(), Vec::new())),
                (Some(_), Some(_)) => Err("Invalid invocation: 'arguments' must be an array.".to_string()),
            };
            let streams = matches!(items.get(5), Some(Mp::Array(s)) if !s.is_empty());
            HubMessage::Invocation { id: id(), call, streams }
        }
        4 => HubMessage::StreamInvocation { id: id() },
        7 => HubMessage::Close,
        8 | 9 => {
            let n = items.get(1);
            let n = sequence_id(n.and_then(Mp::as_i64), n.and_then(Mp::as_u64).is_some())?;
            if kind == 8 {
                HubMessage::Ack(n)
            } else {
                HubMessage::Sequence(n)
            }
        }
        k if tracked_type(k) => HubMessage::IgnoredTracked,
        _ => HubMessage::Ignored,
    })
}

/// A JSON value as MessagePack.
fn to_mp(v: &Value) -> Mp {
    match v {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into(),
            (None, Some(i)) => i.into(),
            _ => Mp::F64(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(a) => Mp::Array(a.iter().map(to_mp).collect()),
        Value::Object(o) => Mp::Map(o.iter().map(|(k, v)| (k.as_str().into(), to_mp(v))).collect()),
    }
}

/// A MessagePack argument as JSON (what hub methods read).
fn to_json(v: &Mp) -> Value {
    match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(*b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => u.into(),
            (None, Some(i)) => i.into(),
            _ => Value::Null,
        },
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Mp::String(s) => s.as_str().map_or(Value::Null, |s| Value::String(s.to_string())),
        Mp::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Mp::Map(m) => {
            Value::Object(m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), to_json(v)))).collect())
        }
        Mp::Binary(_) | Mp::Ext(..) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn framed(v: &Mp) -> Vec<u8> {
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, v).expect("encode");
        let mut out = vec![body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn messages_are_length_prefixed_arrays() {
        let join = Mp::Array(vec![
            1.into(),
            Mp::Map(vec![]),
            "7".into(),
            "JoinRoom".into(),
            Mp::Array(vec![3.into()]),
            Mp::Array(vec![]),
        ]);
        let mut buf = framed(&join);
        buf.extend(framed(&Mp::Array(vec![6.into()])));
        let close = framed(&Mp::Array(vec![7.into(), Mp::Nil]));
        buf.extend(&close[..2]);
        let mut out = VecDeque::new();
        MessagePack.read(&mut buf, 1 << 10, &mut out).expect("read");
        assert_eq!(
            out.pop_front(),
            Some(HubMessage::Invocation {
                id: Some("7".into()),
                call: Ok(("JoinRoom".into(), vec![json!(3)])),
                streams: false
            })
        );
        assert_eq!(out.pop_front(), Some(HubMessage::Ignored));
        assert!(out.is_empty());
        buf.extend(&close[2..]);
        MessagePack.read(&mut buf, 1 << 10, &mut out).expect("read");
        assert_eq!(out.pop_front(), Some(HubMessage::Close));
        assert!(buf.is_empty());

        let mut big = vec![0x80, 0x80, 0x10];
        assert_eq!(MessagePack.read(&mut big, 1 << 10, &mut out), Err(Broken::TooLarge));
        let mut seq = framed(&Mp::Array(vec![9.into(), 4.into()]));
        seq.extend(framed(&Mp::Array(vec![8.into(), (-2).into()])));
        seq.extend(framed(&Mp::Array(vec![5.into(), Mp::Map(vec![]), "1".into()])));
        MessagePack.read(&mut seq, 1 << 10, &mut out).expect("read");
        let read: Vec<HubMessage> = out.drain(..).collect();
        assert_eq!(read, vec![HubMessage::Sequence(4), HubMessage::Ack(-2), HubMessage::IgnoredTracked]);
        let mut bad = vec![1, 0xc1];
        assert!(matches!(MessagePack.read(&mut bad, 1 << 10, &mut out), Err(Broken::Invalid(_))));
    }

    #[test]
    fn the_server_writes_what_the_clients_read() {
        let frame = MessagePack.write(&Outgoing::Completion { id: "3", outcome: Ok(None) });
        assert_eq!(frame.opcode(), Frame::BINARY);
        let b = frame.payload();
        assert_eq!(b[0] as usize, b.len() - 1);
        let v = rmpv::decode::read_value(&mut &b[1..]).expect("decode");
        assert_eq!(v, Mp::Array(vec![3.into(), Mp::Map(vec![]), "3".into(), 2.into()]));
        let sent = json!({ "messageId": 9, "message": "hi" });
        let frame = MessagePack.write(&Outgoing::Completion { id: "4", outcome: Ok(Some(&sent)) });
        let v = rmpv::decode::read_value(&mut &frame.payload()[1..]).expect("decode");
        let Mp::Array(items) = v else { panic!("array") };
        assert_eq!((&items[2], items[3].as_u64(), to_json(&items[4])), (&Mp::from("4"), Some(3), sent));
        let frame = MessagePack.write(&Outgoing::Completion { id: "5", outcome: Err("no") });
        let v = rmpv::decode::read_value(&mut &frame.payload()[1..]).expect("decode");
        assert_eq!(v, Mp::Array(vec![3.into(), Mp::Map(vec![]), "5".into(), 1.into(), "no".into()]));

        let payload = json!({ "roomId": 1, "message": "안녕", "images": null, "n": -2 });
        let frame = MessagePack.write(&Outgoing::Invocation { target: "ReceiveMessage", argument: &payload });
        assert_eq!(frame.opcode(), Frame::BINARY);
        let b = frame.payload();
        let v = rmpv::decode::read_value(&mut &b[1..]).expect("decode");
        let Mp::Array(items) = v else { panic!("array") };
        assert_eq!((items[0].as_u64(), &items[2], items[3].as_str()), (Some(1), &Mp::Nil, Some("ReceiveMessage")));
        assert_eq!(to_json(&items[4]), json!([payload]));

        // A 200-byte message takes a two-byte prefix.
        let long = "x".repeat(200);
        let frame = MessagePack.write(&Outgoing::Close { error: &long, allow_reconnect: false });
        assert_eq!(frame.opcode(), Frame::BINARY);
        let b = frame.payload();
        assert_eq!((length(b).expect("prefix")), Some((b.len() - 2, 2)));
    }
}
