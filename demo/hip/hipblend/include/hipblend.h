/* hipblend: y = a * x + b * y on an AMD GPU; its own kernel scales y, then it calls
   hipsaxpy, the library it links. */
#ifndef HIPBLEND_H
#define HIPBLEND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = a * x[i] + b * y[i] for n floats in host memory. 0 on success, else a HIP
   error code (hipsaxpy_error_string names it). */
int hipblend_axpby(float a, const float *x, float b, float *y, size_t n);

#ifdef __cplusplus
}
#endif

#endif
