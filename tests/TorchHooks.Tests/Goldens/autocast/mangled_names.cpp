// Declarations of the at::autocast functions (and at::TensorBase::_version) TorchHooks binds (libtorch 2.10 signatures), to check their mangled
// names with clang (no libtorch needed):
//   clang++-14 -target x86_64-pc-windows-msvc -S -emit-llvm -o - mangled_names.cpp | grep ^declare   (MSVC names)
//   clang++-14 -target x86_64-linux-gnu      -S -emit-llvm -o - mangled_names.cpp | grep ^declare   (Itanium names)
// Both lists equal the names in src/TorchHooks/Autocast/AutocastNative.cs; the names the packages really export are
// in ../native/exports.json (make_exports.py), which the test suite checks every bound name against.
typedef signed char int8_t; typedef long long int64_t;
namespace c10 { enum class DeviceType : int8_t {CPU=0}; enum class ScalarType : int8_t {Float=6}; }
namespace at { namespace autocast {
void set_autocast_enabled(c10::DeviceType, bool);
bool is_autocast_enabled(c10::DeviceType);
void set_autocast_dtype(c10::DeviceType, c10::ScalarType);
c10::ScalarType get_autocast_dtype(c10::DeviceType);
int increment_nesting();   // int in libtorch 2.10 (MSVC: YAHXZ), not int64_t
int decrement_nesting();
void clear_cache();
void set_autocast_cache_enabled(bool);
bool is_autocast_cache_enabled();
}
class TensorBase { public: int64_t _version() const; };   // the version counter read by CastCache
}
void use() {
  using namespace at::autocast;
  set_autocast_enabled(c10::DeviceType::CPU, true); is_autocast_enabled(c10::DeviceType::CPU);
  set_autocast_dtype(c10::DeviceType::CPU, c10::ScalarType::Float); get_autocast_dtype(c10::DeviceType::CPU);
  increment_nesting(); decrement_nesting(); clear_cache(); set_autocast_cache_enabled(true); is_autocast_cache_enabled();
}
int64_t version(const at::TensorBase& t) { return t._version(); }
