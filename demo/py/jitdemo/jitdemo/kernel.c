/* jitdemo's kernel: what its Python side calls through ctypes. */
#include <stddef.h>

/* The sum of x[i] * y[i] for i < n. */
double jitdemo_dot(const double *x, const double *y, size_t n) {
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) sum += x[i] * y[i];
  return sum;
}

/* The kernel's ABI version: the Python side refuses another. */
int jitdemo_abi(void) { return 1; }
