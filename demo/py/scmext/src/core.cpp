// scale(xs, a): every element times a. pybind11_version(): the pybind11 it was built with.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

namespace py = pybind11;

static std::vector<double> scale(const std::vector<double> &xs, double a) {
    std::vector<double> out;
    out.reserve(xs.size());
    for (double x : xs) out.push_back(a * x);
    return out;
}

PYBIND11_MODULE(_core, m) {
    m.def("scale", &scale, "every element of xs times a");
    m.def("pybind11_version", [] {
        return std::to_string(PYBIND11_VERSION_MAJOR) + "." +
               std::to_string(PYBIND11_VERSION_MINOR) + "." +
               std::to_string(PYBIND11_VERSION_PATCH);
    });
}
