using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;

namespace TorchHooks
{
    /// <summary>
    /// Every TorchSharp member TorchHooks reaches by reflection, in one place, each resolved once. TorchSharp 0.107.0 has
    /// them all (<see cref="Members"/>; a test checks each). A TorchSharp that renamed one is caught at first use, loudly:
    /// where TorchHooks cannot work without the member (the hook dictionaries) an <see cref="InvalidOperationException"/>
    /// names the member and both versions; where it only makes errors clearer (disposed-model checks, the libtorch
    /// version), a one-time trace warning says so and what changes. Nothing falls back silently.
    /// </summary>
    internal static class TorchSharpInternals
    {
        /// <summary>The TorchSharp version these members were checked against.</summary>
        public const string CheckedVersion = "0.107.0";

        private const BindingFlags Instance = BindingFlags.Instance | BindingFlags.NonPublic;

        // First: the accessors below are initialized in text order and may warn.
        private static readonly HashSet<string> s_warned = new();

        /// <summary>The TorchSharp loaded, as its assembly says (e.g. <c>0.107.0</c>).</summary>
        public static string LoadedVersion
        {
            get
            {
                var asm = typeof(torch.nn.Module).Assembly;
                var info = asm.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
                return info is null ? asm.GetName().Version?.ToString() ?? "?" : info.Split('+')[0];
            }
        }

        /// <summary>
        /// Every member, by name, and whether the loaded TorchSharp has it with the expected type (no type initializer of
        /// <c>torch</c> runs: nothing here loads the native library).
        /// </summary>
        public static IReadOnlyList<(string Member, bool Found)> Members => new[]
        {
            (PreHooksName, HookDictionaryField(typeof(torch.nn.HookableModule<,>), "pre_hooks") is not null),
            (PostHooksName, HookDictionaryField(typeof(torch.nn.HookableModule<,>), "post_hooks") is not null),
            (HandleName, HandleField() is not null),
            (SubmodulesName, RegistrationField(SubmodulesField) is not null),
            (ParamsName, RegistrationField(ParamsField) is not null),
            (BuffersName, RegistrationField(BuffersField) is not null),
            (LibtorchVersionName, LibtorchVersionField() is not null),
            (RegisterParameterName, RegisterParameterMethod() is not null),
            (RegisterBufferName, RegisterBufferMethod() is not null),
            (TensorHandleName, TensorHandleField() is not null),
        };

        // ---- HookableModule<TPre, TPost>.pre_hooks / post_hooks: TorchSharp's hook dictionaries (Dispatchers swaps them copy-on-write) ----

        private const string PreHooksName = "TorchSharp.Modules.HookableModule<,>.pre_hooks (Dictionary<string, TPre>)";
        private const string PostHooksName = "TorchSharp.Modules.HookableModule<,>.post_hooks (Dictionary<string, TPost>)";

        /// <summary>The hook-dictionary fields of <c>HookableModule&lt;TPre, TPost&gt;</c>, resolved once per closed type.</summary>
        public static class HookDictionaries<TPre, TPost> where TPre : Delegate where TPost : Delegate
        {
            private static readonly FieldInfo? s_pre = HookDictionaryField(typeof(torch.nn.HookableModule<TPre, TPost>), "pre_hooks");
            private static readonly FieldInfo? s_post = HookDictionaryField(typeof(torch.nn.HookableModule<TPre, TPost>), "post_hooks");

            /// <summary>The pre-hook dictionary field.</summary>
            /// <exception cref="InvalidOperationException">The loaded TorchSharp has no such field: TorchHooks cannot attach its dispatcher safely.</exception>
            public static FieldInfo Pre => s_pre ?? throw Missing(PreHooksName, "TorchHooks puts its dispatcher in this dictionary copy-on-write, so calls under way on other threads are never disturbed");

            /// <summary>The post-hook dictionary field.</summary>
            public static FieldInfo Post => s_post ?? throw Missing(PostHooksName, "TorchHooks puts its dispatcher in this dictionary copy-on-write, so calls under way on other threads are never disturbed");
        }

        private static FieldInfo? HookDictionaryField(Type hookable, string name)
        {
            var field = hookable.GetField(name, Instance);
            return field is not null && field.FieldType.IsGenericType && field.FieldType.GetGenericTypeDefinition() == typeof(Dictionary<,>)
                && field.FieldType.GetGenericArguments()[0] == typeof(string) ? field : null;
        }

        // ---- Module.handle: the native module (a SafeHandle Dispose invalidates) ----

        private const string HandleName = "TorchSharp.torch.nn.Module.handle (SafeHandle)";

        private static FieldInfo? HandleField()
        {
            var field = typeof(torch.nn.Module).GetField("handle", Instance);
            return field is not null && typeof(SafeHandle).IsAssignableFrom(field.FieldType) ? field : null;
        }

        /// <summary><c>m =&gt; m.handle</c>, compiled once; null (after a one-time warning) if the loaded TorchSharp has no such field.</summary>
        public static readonly Func<torch.nn.Module, SafeHandle?>? ModuleHandle = CompileHandle();

        private static Func<torch.nn.Module, SafeHandle?>? CompileHandle()
        {
            if (HandleField() is not { } field)
            {
                Warn(HandleName, "a facade of a disposed model is not recognized before the call; libtorch's error surfaces instead");
                return null;
            }
            var m = Expression.Parameter(typeof(torch.nn.Module), "m");
            return Expression.Lambda<Func<torch.nn.Module, SafeHandle?>>(Expression.Convert(Expression.Field(m, field), typeof(SafeHandle)), m).Compile();
        }

        // ---- Module._internal_submodules / _internal_params / _internal_buffers: the registrations (named_parameters() skips disposed tensors) ----

        private const string SubmodulesField = "_internal_submodules", ParamsField = "_internal_params", BuffersField = "_internal_buffers";
        private const string SubmodulesName = "TorchSharp.torch.nn.Module._internal_submodules (a dictionary with Values)";
        private const string ParamsName = "TorchSharp.torch.nn.Module._internal_params (a dictionary with Values)";
        private const string BuffersName = "TorchSharp.torch.nn.Module._internal_buffers (a dictionary with Values)";

        /// <summary><c>m =&gt; m._internal_submodules?.Values</c>, compiled once; null (after a one-time warning) if missing.</summary>
        public static readonly Func<torch.nn.Module, ICollection<torch.nn.Module>?>? Submodules = Values<torch.nn.Module>(SubmodulesField, SubmodulesName);
        /// <summary><c>m =&gt; m._internal_params?.Values</c>.</summary>
        public static readonly Func<torch.nn.Module, ICollection<Parameter>?>? Parameters = Values<Parameter>(ParamsField, ParamsName);
        /// <summary><c>m =&gt; m._internal_buffers?.Values</c>.</summary>
        public static readonly Func<torch.nn.Module, ICollection<(torch.Tensor, bool)>?>? Buffers = Values<(torch.Tensor, bool)>(BuffersField, BuffersName);

        private static (FieldInfo Field, PropertyInfo Values)? RegistrationField(string name)
        {
            var field = typeof(torch.nn.Module).GetField(name, Instance);
            var values = field?.FieldType.GetProperty("Values");
            return field is null || values is null ? null : (field, values);
        }

        private static Func<torch.nn.Module, ICollection<T>?>? Values<T>(string fieldName, string member)
        {
            if (RegistrationField(fieldName) is not var (field, values) || !typeof(ICollection<T>).IsAssignableFrom(values.PropertyType))
            {
                Warn(member, "a model whose parameters were disposed is recognized by its native handle only; libtorch's error surfaces instead");
                return null;
            }
            var m = Expression.Parameter(typeof(torch.nn.Module), "m");
            var dict = Expression.Variable(field.FieldType, "d");
            var body = Expression.Block(new[] { dict },
                Expression.Assign(dict, Expression.Field(m, field)),
                Expression.Condition(Expression.Equal(dict, Expression.Constant(null, field.FieldType)),
                    Expression.Constant(null, typeof(ICollection<T>)),
                    Expression.Convert(Expression.Property(dict, values), typeof(ICollection<T>))));
            return Expression.Lambda<Func<torch.nn.Module, ICollection<T>?>>(body, m).Compile();
        }

        // ---- torch.libtorchPackageVersion: the libtorch package TorchSharp was built against (read as metadata: no type initializer runs) ----

        private const string LibtorchVersionName = "TorchSharp.torch.libtorchPackageVersion (const string)";

        private static FieldInfo? LibtorchVersionField()
        {
            var field = typeof(torch).GetField("libtorchPackageVersion", BindingFlags.NonPublic | BindingFlags.Static);
            return field is { IsLiteral: true } && field.FieldType == typeof(string) ? field : null;
        }

        /// <summary>The raw libtorch package version (e.g. <c>2.10.0.0</c>), or <paramref name="assumed"/> after a one-time warning if the loaded TorchSharp has no such constant.</summary>
        public static string LibtorchPackageVersion(string assumed)
        {
            if (LibtorchVersionField()?.GetRawConstantValue() is string raw) return raw;
            Warn(LibtorchVersionName, $"the native-library fix assumes libtorch {assumed}, the version TorchSharp {CheckedVersion} uses");
            return assumed;
        }

        // ---- Module.ConditionallyRegisterParameter / ConditionallyRegisterBuffer: replacing a meta tensor's registration (BigModels/ModuleSlots.cs) ----

        private const string RegisterParameterName = "TorchSharp.torch.nn.Module.ConditionallyRegisterParameter(string, Parameter) (protected)";
        private const string RegisterBufferName = "TorchSharp.torch.nn.Module.ConditionallyRegisterBuffer(string, Tensor, bool) (protected)";

        private static MethodInfo? RegisterParameterMethod() => typeof(torch.nn.Module).GetMethod("ConditionallyRegisterParameter", Instance, null, new[] { typeof(string), typeof(Parameter) }, null);
        private static MethodInfo? RegisterBufferMethod() => typeof(torch.nn.Module).GetMethod("ConditionallyRegisterBuffer", Instance, null, new[] { typeof(string), typeof(torch.Tensor), typeof(bool) }, null);

        /// <summary>Registers a parameter in place of the one of that name (TorchSharp's own <c>Module.to</c> does so); throws naming the member if missing.</summary>
        public static void RegisterParameter(torch.nn.Module module, string name, Parameter value)
            => (RegisterParameterMethod() ?? throw Missing(RegisterParameterName, "a parameter of an empty (meta) model cannot be given storage"))
               .Invoke(module, new object[] { name, value });

        /// <summary>Registers a persistent buffer in place of the one of that name; throws naming the member if missing.</summary>
        public static void RegisterBuffer(torch.nn.Module module, string name, torch.Tensor value)
            => (RegisterBufferMethod() ?? throw Missing(RegisterBufferName, "a buffer of an empty (meta) model cannot be given storage"))
               .Invoke(module, new object[] { name, value, true });

        // ---- Tensor.handle: exchanging two tensors' native tensors (PyTorch's torch.utils.swap_tensors; Dispatch/TensorPlacement.cs) ----

        private const string TensorHandleName = "TorchSharp.torch.Tensor.handle (IntPtr)";

        private static FieldInfo? TensorHandleField()
        {
            var field = typeof(torch.Tensor).GetField("handle", Instance);
            return field?.FieldType == typeof(IntPtr) ? field : null;
        }

        private static readonly FieldInfo? s_tensorHandle = TensorHandleField();

        /// <summary>
        /// PyTorch's <c>torch.utils.swap_tensors(a, b)</c>: the two managed tensor objects exchange the native tensors they
        /// stand for, so <paramref name="a"/> (e.g. a registered <c>Parameter</c> an optimizer holds) now is what
        /// <paramref name="b"/> was — another device — and keeps its identity. Throws naming the member if missing.
        /// </summary>
        public static void SwapTensors(torch.Tensor a, torch.Tensor b)
        {
            var field = s_tensorHandle ?? throw Missing(TensorHandleName, "dispatch_model moves a parameter to another device by exchanging native tensors, keeping the Parameter object");
            var ha = field.GetValue(a);
            field.SetValue(a, field.GetValue(b));
            field.SetValue(b, ha);
        }

        // ---- reporting ----

        private static InvalidOperationException Missing(string member, string why)
            => new($"TorchHooks needs TorchSharp's internal member {member}, which TorchSharp {CheckedVersion} has; the loaded TorchSharp {LoadedVersion} has none. " +
                   $"({why}.) Use TorchSharp {CheckedVersion}, or a TorchHooks release made for TorchSharp {LoadedVersion}.");

        /// <summary>Once per member per process: a trace warning naming the member, both versions and what changes without it.</summary>
        private static void Warn(string member, string consequence)
        {
            lock (s_warned)
                if (!s_warned.Add(member)) return;
            Trace.TraceWarning($"TorchHooks: TorchSharp's internal member {member} is missing in the loaded TorchSharp {LoadedVersion} (TorchHooks was checked against {CheckedVersion}): {consequence}.");
        }
    }
}
