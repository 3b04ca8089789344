package dcerpc

import (
	"context"

	"github.com/oiweiwei/go-msrpc/midl/uuid"
)

type objectKey struct{}

// withObject returns ctx carrying the object UUID of a request
// (PFC_OBJECT_UUID, C706 12.6.4.9).
func withObject(ctx context.Context, wire [uuidLen]byte) context.Context {
	u := &uuid.UUID{}
	u.DecodeBinary(wire[:])
	return context.WithValue(ctx, objectKey{}, u)
}

// ObjectFrom returns the object UUID the client sent with the call, if
// any.
func ObjectFrom(ctx context.Context) (*uuid.UUID, bool) {
	u, ok := ctx.Value(objectKey{}).(*uuid.UUID)
	return u, ok
}
