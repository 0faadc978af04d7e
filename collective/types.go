package collective

import (
	"fmt"
	"strings"
)

// DType is the element type of a collective's buffers. Its values are those
// of NCCL's ncclDataType_t, so the NCCL shim converts with a plain cast.
// FP8 types (ncclFloat8e4m3 = 10, ncclFloat8e5m2 = 11) are not supported.
type DType int32

// Element types, numbered as ncclDataType_t.
const (
	I8   DType = 0 // ncclInt8, ncclChar
	U8   DType = 1 // ncclUint8
	I32  DType = 2 // ncclInt32, ncclInt
	U32  DType = 3 // ncclUint32
	I64  DType = 4 // ncclInt64
	U64  DType = 5 // ncclUint64
	F16  DType = 6 // ncclFloat16, ncclHalf: IEEE 754 binary16
	F32  DType = 7 // ncclFloat32, ncclFloat
	F64  DType = 8 // ncclFloat64, ncclDouble
	BF16 DType = 9 // ncclBfloat16: the top half of a float32
)

// DTypes lists every supported element type in numeric order.
var DTypes = []DType{I8, U8, I32, U32, I64, U64, F16, F32, F64, BF16}

var dtypeInfo = [...]struct {
	name string
	size int
}{
	I8: {"i8", 1}, U8: {"u8", 1}, I32: {"i32", 4}, U32: {"u32", 4}, I64: {"i64", 8},
	U64: {"u64", 8}, F16: {"f16", 2}, F32: {"f32", 4}, F64: {"f64", 8}, BF16: {"bf16", 2},
}

// Valid reports whether d is a supported element type.
func (d DType) Valid() bool { return d >= 0 && int(d) < len(dtypeInfo) }

// Size returns the size of one element in bytes, or 0 for an unsupported type.
func (d DType) Size() int {
	if !d.Valid() {
		return 0
	}
	return dtypeInfo[d].size
}

// Float reports whether d is a floating-point type.
func (d DType) Float() bool { return d == F16 || d == F32 || d == F64 || d == BF16 }

func (d DType) String() string {
	if !d.Valid() {
		return fmt.Sprintf("DType(%d)", int32(d))
	}
	return dtypeInfo[d].name
}

// ParseDType parses a type name as String writes it ("f32", "bf16", ...);
// the NCCL names without the prefix ("float32", "half", "int", ...) are
// accepted too, in any case.
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "i8", "int8", "char":
		return I8, nil
	case "u8", "uint8":
		return U8, nil
	case "i32", "int32", "int":
		return I32, nil
	case "u32", "uint32":
		return U32, nil
	case "i64", "int64":
		return I64, nil
	case "u64", "uint64":
		return U64, nil
	case "f16", "float16", "half":
		return F16, nil
	case "f32", "float32", "float":
		return F32, nil
	case "f64", "float64", "double":
		return F64, nil
	case "bf16", "bfloat16":
		return BF16, nil
	}
	return 0, fmt.Errorf("%w: unknown data type %q", ErrInvalidArgument, s)
}

// Op is a reduction operator. Its values are those of NCCL's ncclRedOp_t.
type Op int32

// Reduction operators, numbered as ncclRedOp_t.
const (
	Sum  Op = 0 // ncclSum
	Prod Op = 1 // ncclProd
	Max  Op = 2 // ncclMax
	Min  Op = 3 // ncclMin
	// Avg is the sum divided by the number of ranks, as ncclAvg. The sum is
	// formed first and divided once at the end (integers divide with
	// truncation toward zero, as in C).
	Avg Op = 4 // ncclAvg
)

// Ops lists every operator in numeric order.
var Ops = []Op{Sum, Prod, Max, Min, Avg}

var opNames = [...]string{Sum: "sum", Prod: "prod", Max: "max", Min: "min", Avg: "avg"}

// Valid reports whether o is a supported operator.
func (o Op) Valid() bool { return o >= 0 && int(o) < len(opNames) }

func (o Op) String() string {
	if !o.Valid() {
		return fmt.Sprintf("Op(%d)", int32(o))
	}
	return opNames[o]
}

// Algo selects the algorithm of a collective.
type Algo int

// Algorithms. The zero value is Auto.
const (
	// Auto picks per call from the message size and the topology: Tree
	// below Options.TreeThreshold bytes, else Hierarchical when the ranks
	// span more than one host and some host holds more than one rank, else
	// Ring.
	Auto Algo = iota
	// Ring is bandwidth-optimal: the ranks form one ring (ranks of one host
	// next to each other, so it crosses each host boundary once) and the
	// data moves in chunks that are pipelined around it.
	Ring
	// Tree is latency-optimal: binomial trees, log2(n) steps.
	Tree
	// Hierarchical reduces inside each host first, runs a ring between one
	// leader per host, then broadcasts inside each host. It applies to
	// AllReduce; the other operations run their Ring form under it.
	Hierarchical
)

// EnvAlgo names the environment variable that forces an algorithm, like
// NCCL_ALGO: "ring", "tree", "hierarchical" (or "hier"), "auto". New reads it
// when Options.Algo is Auto.
const EnvAlgo = "XGPU_ALGO"

var algoNames = [...]string{Auto: "auto", Ring: "ring", Tree: "tree", Hierarchical: "hierarchical"}

func (a Algo) String() string {
	if a < 0 || int(a) >= len(algoNames) {
		return fmt.Sprintf("Algo(%d)", int(a))
	}
	return algoNames[a]
}

// ParseAlgo parses an algorithm name, in any case: "auto" (or ""), "ring",
// "tree", "hierarchical" or "hier".
func ParseAlgo(s string) (Algo, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "ring":
		return Ring, nil
	case "tree":
		return Tree, nil
	case "hierarchical", "hier":
		return Hierarchical, nil
	}
	return Auto, fmt.Errorf("%w: unknown algorithm %q (want auto, ring, tree or hierarchical)", ErrInvalidArgument, s)
}
