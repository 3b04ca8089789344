// Package wds serves the Windows Deployment Services control interface
// (WdsRpcInterface, [MS-WDSC]) with the OS deployment operations of
// [MS-WDSOSD]: logging, client unattend, image enumeration and boot program
// reset.
//
// It follows the layout of the other protocol packages: packet.go is the
// wire format (WDSCPL packets, pure), ops.go the decisions (request, caller
// and state in, reply out; no sockets, no clock), handler.go the serving
// side that plugs into the DCE/RPC runtime as a
// wdsrpcinterface.InterfaceServer and emits tracker events, and client.go
// a small client side for tests and the imaging agent.
package wds
