// Package svc is the plumbing the cloud services (cloud/as, cloud/nms,
// cloud/trs) share: protoactor remote between their actor systems, the
// framing of service-to-service messages, and UDP listeners that hand
// packets into the actor world.
//
// # Why BytesValue
//
// protoactor-go's remote lets one register a remote.Serializer, but in the
// version we pin (2024-08) the EndpointWriter never reads the serializer ID
// it is given: every message goes through serializer 0, the protobuf one
// (remote/endpoint_writer.go, `serializerID` is declared and never set). A
// msgpack serializer would never be picked. So service messages are our own
// msgpack encodings (a messages.Envelope, framed by [Frame]) carried in a
// registered protobuf type, google.protobuf.BytesValue. The same bytes go
// over gRPC between processes and as a pointer inside one.
package svc
