/* Python binding of libhipsaxpy (plain CPython C API). Importing it loads the HIP
   runtime, which works without a GPU; the functions report a missing GPU as an error. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

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
  int count = hipsaxpy_device_count();
  if (count < 0) return PyLong_FromLong(0);  /* no GPU (or no driver): none usable */
  return PyLong_FromLong(count);
}

static PyObject *saxpy(PyObject *self, PyObject *args) {
  float a;
  PyObject *x_obj, *y_obj;
  Py_buffer x, y;
  if (!PyArg_ParseTuple(args, "fOO:saxpy", &a, &x_obj, &y_obj)) return NULL;
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
  err = hipsaxpy_run(a, (const float *)x.buf, (float *)y.buf, (size_t)(y.len / 4));
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&x);
  PyBuffer_Release(&y);
  if (err != 0) {
    PyErr_Format(PyExc_RuntimeError, "hipsaxpy: %s (HIP error %d)", hipsaxpy_error_string(err),
                 err);
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"device_count", device_count, METH_NOARGS, "Number of GPUs the HIP runtime sees."},
    {"saxpy", saxpy, METH_VARARGS, "saxpy(a, x, y): y = a * x + y on the GPU, in place."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hipsaxpy", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hipsaxpy(void) { return PyModule_Create(&module); }
