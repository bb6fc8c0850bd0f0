// Package svc is the plumbing the cloud services (cloud/as, cloud/nms,
// cloud/trs) share: the framing of service-to-service messages (Frame), the
// Router and Links that carry frames between the services' actor systems
// (directly inside a process, through the process's one Gateway between
// processes), the store workers, and UDP listeners that hand packets into
// the actor world.
//
// # Links instead of PIDs
//
// Each service runs in an actor system of its own. protoactor PIDs cannot
// cross systems: without a remote every system's address is "nonhost", so
// a PID says nothing about which system holds the actor. Services therefore
// name each other with a Ref (process, service, actor ID) and send through a
// Link; a request carries the asking actor's Ref, and the answer comes
// back to that actor in that process, where its transaction state is.
//
// # Who may send what
//
// Gateways speak mutual TLS 1.3 with the service certificates (Credentials),
// and every frame that arrives is held against the roles its sender proved
// (Rules, Authorize) in the gRPC stream interceptor, before protoactor
// hands any of it to an actor: a valid service certificate lets its holder
// send only what that service sends (a TRS cannot hand NMS a node's keys).
// A process running several services proves the other roles on each
// connection it opens (roleproof.go). Refusals are counted by reason.
//
// # Why BytesValue between processes
//
// protoactor-go's remote lets one register a remote.Serializer, but in the
// version we pin (2024-08) the EndpointWriter never reads the serializer ID
// it is given: every message goes through serializer 0, the protobuf one
// (remote/endpoint_writer.go, `serializerID` is declared and never set). A
// msgpack serializer would never be picked. So between gateways a frame
// (our own msgpack envelope, framed by [Frame], behind a route header) is
// carried in a registered protobuf type, google.protobuf.BytesValue.
// Inside a process the same frame bytes travel in a *Message.
package svc
