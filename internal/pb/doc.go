// Package pb holds the protobuf messages and gRPC services of xgpu's control
// plane: the Server service of each GPU host and the Aggregator service of the
// pool. xgpu.pb.go and xgpu_grpc.pb.go are generated from xgpu.proto by
// `make generate`; do not edit them.
//
// The generated clients and servers are safe for concurrent use, as gRPC's are.
package pb
