// Element-wise kernels the xgpu worker loads at start for the collectives
// (server/cuda Reduce and Divide). The PTX next to this file,
// reduce_sm90.ptx, is generated from it on a machine with the CUDA toolkit
// (`make generate-ptx`) and embedded in the worker, so that workers need
// no compiler. Every kernel is extern "C" (unmangled names) and walks its
// elements with a grid-stride loop, so any grid covers any n.
//
//   xgpu_reduce_<op>_<type>(T *dst, const T *src, uint64_t n)   dst[i] = op(dst[i], src[i])
//   xgpu_divide_<type>(T *buf, uint64_t n, uint64_t divisor)     buf[i] = buf[i] / divisor
//
// op: sum, prod, max, min. type: i8 u8 i32 u32 i64 u64 f16 f32 f64 bf16
// (ncclDataType_t order). Arithmetic is C's: integers wrap (computed
// unsigned, so that signed overflow is defined), min and max on floats are
// fmin and fmax (a NaN loses to a number), and f16 and bf16 compute in
// float and round to nearest even. Parameters, each 8 bytes: {0,8} {8,8}
// {16,8}.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// Storage type T, the type V arithmetic runs in, and the conversions.
template <typename T> struct arith {
	typedef T V;
	__device__ static V load(T x) { return x; }
	__device__ static T store(V x) { return x; }
};
template <> struct arith<__half> {
	typedef float V;
	__device__ static V load(__half x) { return __half2float(x); }
	__device__ static __half store(V x) { return __float2half_rn(x); }
};
template <> struct arith<__nv_bfloat16> {
	typedef float V;
	__device__ static V load(__nv_bfloat16 x) { return __bfloat162float(x); }
	__device__ static __nv_bfloat16 store(V x) { return __float2bfloat16_rn(x); }
};

// Unsigned twin of an integer type, for wrapping arithmetic.
template <typename T> struct wrap { typedef T U; };
template <> struct wrap<int8_t> { typedef uint8_t U; };
template <> struct wrap<int32_t> { typedef uint32_t U; };
template <> struct wrap<int64_t> { typedef uint64_t U; };

template <typename V> __device__ V op_sum(V a, V b) {
	typedef typename wrap<V>::U U;
	return (V)((U)a + (U)b);
}
template <typename V> __device__ V op_prod(V a, V b) {
	typedef typename wrap<V>::U U;
	return (V)((U)a * (U)b);
}
template <typename V> __device__ V op_min(V a, V b) { return b < a ? b : a; }
template <typename V> __device__ V op_max(V a, V b) { return b > a ? b : a; }
template <> __device__ float op_sum(float a, float b) { return a + b; }
template <> __device__ float op_prod(float a, float b) { return a * b; }
template <> __device__ float op_min(float a, float b) { return fminf(a, b); }
template <> __device__ float op_max(float a, float b) { return fmaxf(a, b); }
template <> __device__ double op_sum(double a, double b) { return a + b; }
template <> __device__ double op_prod(double a, double b) { return a * b; }
template <> __device__ double op_min(double a, double b) { return fmin(a, b); }
template <> __device__ double op_max(double a, double b) { return fmax(a, b); }

#define OP_sum op_sum
#define OP_prod op_prod
#define OP_min op_min
#define OP_max op_max

template <typename T, typename arith<T>::V (*OP)(typename arith<T>::V, typename arith<T>::V)>
__device__ void reduce(T *dst, const T *src, uint64_t n) {
	typedef arith<T> A;
	const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
	for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
		dst[i] = A::store(OP(A::load(dst[i]), A::load(src[i])));
	}
}

// The type a division runs in: 64-bit for integers (so that any divisor
// divides as C's integer division, truncating toward zero), the arithmetic
// type for floats.
template <typename T> struct wide { typedef typename arith<T>::V W; };
template <> struct wide<int8_t> { typedef int64_t W; };
template <> struct wide<int32_t> { typedef int64_t W; };
template <> struct wide<int64_t> { typedef int64_t W; };
template <> struct wide<uint8_t> { typedef uint64_t W; };
template <> struct wide<uint32_t> { typedef uint64_t W; };
template <> struct wide<uint64_t> { typedef uint64_t W; };

template <typename T> __device__ void divide(T *buf, uint64_t n, uint64_t divisor) {
	typedef arith<T> A;
	typedef typename A::V V;
	typedef typename wide<T>::W W;
	const W d = (W)divisor;
	const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
	for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
		buf[i] = A::store((V)((W)A::load(buf[i]) / d));
	}
}

#define REDUCE(op, name, T)                                                                     \
	extern "C" __global__ void xgpu_reduce_##op##_##name(T *dst, const T *src, uint64_t n) { \
		reduce<T, OP_##op<arith<T>::V> >(dst, src, n);                                        \
	}

#define TYPE(name, T)                                                                      \
	REDUCE(sum, name, T)                                                                   \
	REDUCE(prod, name, T)                                                                  \
	REDUCE(max, name, T)                                                                   \
	REDUCE(min, name, T)                                                                   \
	extern "C" __global__ void xgpu_divide_##name(T *buf, uint64_t n, uint64_t divisor) { \
		divide<T>(buf, n, divisor);                                                        \
	}

TYPE(i8, int8_t)
TYPE(u8, uint8_t)
TYPE(i32, int32_t)
TYPE(u32, uint32_t)
TYPE(i64, int64_t)
TYPE(u64, uint64_t)
TYPE(f16, __half)
TYPE(f32, float)
TYPE(f64, double)
TYPE(bf16, __nv_bfloat16)
