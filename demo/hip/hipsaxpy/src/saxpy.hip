// The kernel library: hipcc compiles it once per --offload-arch into one offload
// bundle (.hip_fatbin) inside libhipsaxpy.so.
#include <hip/hip_runtime.h>

#include "hipsaxpy.h"

namespace {

constexpr unsigned kBlock = 256;

__global__ void saxpy_kernel(float a, const float *x, float *y, size_t n) {
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

}  // namespace

extern "C" int hipsaxpy_device_count(void) {
  int count = 0;
  hipError_t err = hipGetDeviceCount(&count);
  return err == hipSuccess ? count : -static_cast<int>(err);
}

extern "C" const char *hipsaxpy_error_string(int code) {
  return hipGetErrorString(static_cast<hipError_t>(code < 0 ? -code : code));
}

extern "C" int hipsaxpy_run(float a, const float *x, float *y, size_t n) {
  if (n == 0) return 0;
  const size_t bytes = n * sizeof(float);
  float *dx = nullptr, *dy = nullptr;
  hipError_t err = hipMalloc(reinterpret_cast<void **>(&dx), bytes);
  if (err == hipSuccess) err = hipMalloc(reinterpret_cast<void **>(&dy), bytes);
  if (err == hipSuccess) err = hipMemcpy(dx, x, bytes, hipMemcpyHostToDevice);
  if (err == hipSuccess) err = hipMemcpy(dy, y, bytes, hipMemcpyHostToDevice);
  if (err == hipSuccess) {
    const unsigned blocks = static_cast<unsigned>((n + kBlock - 1) / kBlock);
    hipLaunchKernelGGL(saxpy_kernel, dim3(blocks), dim3(kBlock), 0, 0, a, dx, dy, n);
    err = hipGetLastError();
  }
  if (err == hipSuccess) err = hipMemcpy(y, dy, bytes, hipMemcpyDeviceToHost);
  if (dx) (void)hipFree(dx);
  if (dy) (void)hipFree(dy);
  return static_cast<int>(err);
}
