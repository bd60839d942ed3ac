//! A blocking native-protocol client for tests: one request at a time with `call`, or
//! pipelined with `send`/`recv`, or raw bytes through `frame` and the public `stream`.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use bytes::Bytes;
use protocol::codec::{decode_response, encode_request};
use protocol::messages::{Request, Response};

use super::WAIT;

pub struct Raw {
    pub stream: TcpStream,
    next_id: u32,
}

impl Raw {
    /// Connects with read and write timeouts of `WAIT`, so a stuck server fails the test.
    pub fn connect(addr: impl ToSocketAddrs) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Raw { stream, next_id: 1 }
    }

    /// The next request's correlation id and its encoded frame, not yet sent.
    pub fn frame(&mut self, request: &Request) -> (u32, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        (id, encode_request(id, request).concat())
    }

    pub fn send(&mut self, request: &Request) -> u32 {
        let (id, frame) = self.frame(request);
        self.stream.write_all(&frame).unwrap();
        id
    }

    pub fn recv(&mut self) -> (u32, Response) {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut body).unwrap();
        decode_response(Bytes::from(body)).unwrap()
    }

    pub fn call(&mut self, request: Request) -> Response {
        let id = self.send(&request);
        let (got, response) = self.recv();
        assert_eq!(got, id);
        response
    }
}
