// Package path decides how two overlay nodes reach each other: directly,
// by UDP hole punching, or through the relay (TRS).
//
// Everything here is a pure function of what the cloud knows about the two
// nodes (their Locators), so NMS can call it inside a transaction and the
// rules can be table-tested without sockets or actors.
package path
