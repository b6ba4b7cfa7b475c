// A second kernel library that links the first (libhipsaxpy.so): hipcc compiles its
// own kernel for every --offload-arch into a compressed offload bundle.
#include <hip/hip_runtime.h>

#include "hipblend.h"
#include "hipsaxpy.h"

namespace {

constexpr unsigned kBlock = 256;

__global__ void scale_kernel(float b, float *y, size_t n) {
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = b * y[i];
}

}  // namespace

extern "C" int hipblend_axpby(float a, const float *x, float b, float *y, size_t n) {
  if (n == 0) return 0;
  const size_t bytes = n * sizeof(float);
  float *dy = nullptr;
  hipError_t err = hipMalloc(reinterpret_cast<void **>(&dy), bytes);
  if (err == hipSuccess) err = hipMemcpy(dy, y, bytes, hipMemcpyHostToDevice);
  if (err == hipSuccess) {
    const unsigned blocks = static_cast<unsigned>((n + kBlock - 1) / kBlock);
    hipLaunchKernelGGL(scale_kernel, dim3(blocks), dim3(kBlock), 0, 0, b, dy, n);
    err = hipGetLastError();
  }
  if (err == hipSuccess) err = hipMemcpy(y, dy, bytes, hipMemcpyDeviceToHost);
  if (dy) (void)hipFree(dy);
  if (err != hipSuccess) return static_cast<int>(err);
  return hipsaxpy_run(a, x, y, n);  // y = a * x + (b * y), in the dependency
}
