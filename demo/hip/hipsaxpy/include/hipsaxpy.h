/* hipsaxpy: y = a * x + y on an AMD GPU, as a plain C API over one HIP kernel. */
#ifndef HIPSAXPY_H
#define HIPSAXPY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = a * x[i] + y[i] for n floats in host memory, computed on the current GPU.
   Returns 0 on success, else a HIP error code (see hipsaxpy_error_string). */
int hipsaxpy_run(float a, const float *x, float *y, size_t n);

/* The number of GPUs the HIP runtime sees; a negative HIP error code when it sees none
   (a machine without a GPU or without its driver). */
int hipsaxpy_device_count(void);

/* A readable name of a HIP error code. */
const char *hipsaxpy_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif
