/* Python binding of libhipblend (plain CPython C API); it also calls libhipsaxpy,
   which it finds in the installed hipsaxpy package. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "hipblend.h"
#include "hipsaxpy.h"

static int float_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name) {
  int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj, view, flags) != 0) return -1;
  if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
    PyErr_Format(PyExc_TypeError, "%s must hold float32 values (array('f') or numpy float32)",
                 name);
    PyBuffer_Release(view);
    return -1;
  }
  return 0;
}

static PyObject *device_count(PyObject *self, PyObject *unused) {
  int count = hipsaxpy_device_count();  /* through the linked library */
  return PyLong_FromLong(count < 0 ? 0 : count);
}

static PyObject *axpby(PyObject *self, PyObject *args) {
  float a, b;
  PyObject *x_obj, *y_obj;
  Py_buffer x, y;
  if (!PyArg_ParseTuple(args, "fOfO:axpby", &a, &x_obj, &b, &y_obj)) return NULL;
  if (float_buffer(x_obj, &x, 0, "x") != 0) return NULL;
  if (float_buffer(y_obj, &y, 1, "y") != 0) {
    PyBuffer_Release(&x);
    return NULL;
  }
  if (x.len != y.len) {
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    PyErr_SetString(PyExc_ValueError, "x and y must have the same length");
    return NULL;
  }
  int err;
  Py_BEGIN_ALLOW_THREADS
  err = hipblend_axpby(a, (const float *)x.buf, b, (float *)y.buf, (size_t)(y.len / 4));
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&x);
  PyBuffer_Release(&y);
  if (err != 0) {
    PyErr_Format(PyExc_RuntimeError, "hipblend: %s (HIP error %d)", hipsaxpy_error_string(err),
                 err);
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"device_count", device_count, METH_NOARGS, "Number of GPUs the HIP runtime sees."},
    {"axpby", axpby, METH_VARARGS, "axpby(a, x, b, y): y = a * x + b * y on the GPU, in place."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hipblend", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hipblend(void) { return PyModule_Create(&module); }
