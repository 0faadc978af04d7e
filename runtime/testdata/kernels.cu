// Kernels the runtime's GPU tests compile with nvcc (a cubin and a fatbin)
// at test time, load through the runtime API and launch.

// saxpy: y[i] = a*x[i] + y[i]. Parameters {0,4} {8,8} {16,8} {24,4}.
extern "C" __global__ void saxpy(float a, const float *x, float *y, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) {
		y[i] = a * x[i] + y[i];
	}
}

// A struct passed by value: its layout comes from the driver, not from
// the client. Parameters {0,16} {16,8} {24,8}.
struct Affine {
	float scale;
	double shift;
};

// affine (C++ linkage, so its name is mangled): v[i] = v[i]*p.scale + p.shift,
// with a grid-stride loop.
__global__ void affine(Affine p, double *v, unsigned long long n) {
	for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
	     i += (unsigned long long)gridDim.x * blockDim.x) {
		v[i] = v[i] * p.scale + p.shift;
	}
}
