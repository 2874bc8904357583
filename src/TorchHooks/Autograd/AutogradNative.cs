using System;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// LibTorchSharp's custom autograd node exports (TorchSharp 0.107 <c>THSAutograd.cpp</c>: the <c>CSharpNode</c> that
    /// TorchSharp's <c>autograd.Function</c> is built on), bound directly through function pointers, once per process,
    /// the way <see cref="TensorNative"/> binds its reads. <see cref="AutogradNode"/> uses them without TorchSharp's
    /// per-apply managed machinery.
    /// </summary>
    /// <remarks>
    /// <para>Signatures (LibTorchSharp, C ABI): <c>CSharpNodePtr</c> is two pointers (<c>std::shared_ptr*</c>,
    /// <c>std::weak_ptr*</c>) passed and returned by value; <c>TensorArray</c> is a pointer and an <c>int64_t</c> count; C++
    /// <c>bool</c> is one byte. Each export catches libtorch's C++ exceptions and leaves the message for
    /// <c>THSTorch_get_and_reset_last_err</c> (checked after every call, as TorchSharp's <c>CheckForErrors</c> does).</para>
    /// <para>The node calls keep the GC transition: node construction and output wrapping allocate and take locks in
    /// libtorch. The error check, <c>requires_grad</c> and the grad mode are field and thread-local reads that neither
    /// block nor call back, so they skip it (<c>SuppressGCTransition</c>), as <see cref="TensorNative"/>'s reads do.</para>
    /// </remarks>
    internal static unsafe class AutogradNative
    {
        // LibTorchSharp's C exports (THSAutograd.h, THSTensor.h, THSTorch.h of TorchSharp 0.107.0): one name on every OS.
        private static NativeSymbol C(string signature, string name) => NativeSymbol.C(NativeLibraryId.LibTorchSharp, signature, name);

        internal static readonly NativeSymbol CtorSymbol = C("CSharpNodePtr THSAutograd_CSharpNode_ctor(TensorArray (*applyFunc)(Tensor*, int), void (*managedDeleteNode)())", "THSAutograd_CSharpNode_ctor");
        internal static readonly NativeSymbol DisposeSharedSymbol = C("void THSAutograd_CSharpNode_disposeSharedPtr(CSharpNodePtr node)", "THSAutograd_CSharpNode_disposeSharedPtr");
        internal static readonly NativeSymbol DisposeWeakSymbol = C("void THSAutograd_CSharpNode_disposeWeakPtr(CSharpNodePtr node)", "THSAutograd_CSharpNode_disposeWeakPtr");
        internal static readonly NativeSymbol SetNextEdgesSymbol = C("void THSAutograd_CSharpNode_setNextEdges(CSharpNodePtr node, TensorArray vars, bool is_executable)", "THSAutograd_CSharpNode_setNextEdges");
        internal static readonly NativeSymbol ClearInputMetadataSymbol = C("void THSAutograd_CSharpNode_clearInputMetadata(CSharpNodePtr node)", "THSAutograd_CSharpNode_clearInputMetadata");
        internal static readonly NativeSymbol WrapOutputsSymbol = C("void THSAutograd_Function_wrapOutputs(TensorArray vars, TensorArray nonDiff, TensorArray dirty, TensorArray outputs, CSharpNodePtr node, Tensor* (*allocator)(size_t))", "THSAutograd_Function_wrapOutputs");
        internal static readonly NativeSymbol TensorDisposeSymbol = C("void THSTensor_dispose(Tensor tensor)", "THSTensor_dispose");
        internal static readonly NativeSymbol LastErrorSymbol = C("const char* THSTorch_get_and_reset_last_err()", "THSTorch_get_and_reset_last_err");
        internal static readonly NativeSymbol RequiresGradSymbol = C("int THSTensor_requires_grad(const Tensor tensor)", "THSTensor_requires_grad");
        internal static readonly NativeSymbol GradEnabledSymbol = C("bool THSAutograd_isGradEnabled()", "THSAutograd_isGradEnabled");

        /// <summary>Every export bound here, in binding order (each also a field above, so the export tests list it).</summary>
        internal static readonly NativeSymbol[] Symbols =
        {
            CtorSymbol, DisposeSharedSymbol, DisposeWeakSymbol, SetNextEdgesSymbol, ClearInputMetadataSymbol,
            WrapOutputsSymbol, TensorDisposeSymbol, LastErrorSymbol, RequiresGradSymbol, GradEnabledSymbol,
        };

        /// <summary><c>CSharpNodePtr</c>: the node's <c>std::shared_ptr</c> and <c>std::weak_ptr</c>, each on the native heap.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct NodePtr
        {
            public IntPtr Shared;
            public IntPtr Weak;
        }

        /// <summary><c>TensorArray</c>: <c>Tensor*</c> (an array of <c>at::Tensor*</c>) and its length.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct TensorArray
        {
            public IntPtr Array;
            public long Size;
        }

        internal static delegate* unmanaged[Cdecl]<IntPtr, IntPtr, NodePtr> Ctor;
        internal static delegate* unmanaged[Cdecl]<NodePtr, void> DisposeShared;
        internal static delegate* unmanaged[Cdecl]<NodePtr, void> DisposeWeak;
        internal static delegate* unmanaged[Cdecl]<NodePtr, TensorArray, byte, void> SetNextEdges;
        internal static delegate* unmanaged[Cdecl]<NodePtr, void> ClearInputMetadata;
        internal static delegate* unmanaged[Cdecl]<TensorArray, TensorArray, TensorArray, TensorArray, NodePtr, delegate* unmanaged[Cdecl]<nuint, IntPtr>, void> WrapOutputs;
        internal static delegate* unmanaged[Cdecl]<IntPtr, void> TensorDispose;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr> s_lastError;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int> s_requiresGrad;
        private static delegate* unmanaged[Cdecl, SuppressGCTransition]<byte> s_gradEnabled;

        private static readonly string? s_missing = Bind();

        /// <summary>Whether every export was found (else <see cref="AutogradNode"/> cannot work: <see cref="EnsureBound"/> says which is missing).</summary>
        public static bool Bound => s_missing is null;

        /// <summary>Throws, naming the missing export and TorchSharp's version, if the binding failed.</summary>
        public static void EnsureBound()
        {
            if (s_missing is not null)
                throw new NotSupportedException($"TorchHooks' backward hooks need LibTorchSharp's export '{s_missing}' (TorchSharp {typeof(torch).Assembly.GetName().Version}); it was not found in the native library TorchSharp loaded. TorchHooks is built for TorchSharp 0.107.0.");
        }

        private static string? Bind()
        {
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
                if (!NativeLibrary.TryLoad("LibTorchSharp", typeof(torch).Assembly, null, out var lib)) return "LibTorchSharp (the library)";
                var found = new IntPtr[Symbols.Length];
                for (int i = 0; i < Symbols.Length; i++)
                    if ((found[i] = Symbols[i].TryResolve(lib)) == IntPtr.Zero) return Symbols[i].CurrentName;
                Ctor = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, NodePtr>)found[0];
                DisposeShared = (delegate* unmanaged[Cdecl]<NodePtr, void>)found[1];
                DisposeWeak = (delegate* unmanaged[Cdecl]<NodePtr, void>)found[2];
                SetNextEdges = (delegate* unmanaged[Cdecl]<NodePtr, TensorArray, byte, void>)found[3];
                ClearInputMetadata = (delegate* unmanaged[Cdecl]<NodePtr, void>)found[4];
                WrapOutputs = (delegate* unmanaged[Cdecl]<TensorArray, TensorArray, TensorArray, TensorArray, NodePtr, delegate* unmanaged[Cdecl]<nuint, IntPtr>, void>)found[5];
                TensorDispose = (delegate* unmanaged[Cdecl]<IntPtr, void>)found[6];
                s_lastError = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr>)found[7];
                s_requiresGrad = (delegate* unmanaged[Cdecl, SuppressGCTransition]<IntPtr, int>)found[8];
                s_gradEnabled = (delegate* unmanaged[Cdecl, SuppressGCTransition]<byte>)found[9];
                return null;
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or TypeInitializationException or NotSupportedException)
            {
                return "LibTorchSharp (" + e.Message + ")";
            }
        }

        /// <summary><c>tensor.requires_grad</c> without TorchSharp's transition and error check (a field read in libtorch); TorchSharp's property if unbound.</summary>
        public static bool RequiresGrad(torch.Tensor tensor) => s_missing is null ? s_requiresGrad(tensor.Handle) != 0 : tensor.requires_grad;

        /// <summary><c>torch.is_grad_enabled()</c> likewise (a thread-local read).</summary>
        public static bool IsGradEnabled() => s_missing is null ? s_gradEnabled() != 0 : torch.is_grad_enabled();

        /// <summary>TorchSharp's <c>CheckForErrors</c>: throws the message a LibTorchSharp export left for this thread.</summary>
        public static void Check()
        {
            var error = s_lastError();
            if (error != IntPtr.Zero) throw new ExternalException(Marshal.PtrToStringAnsi(error));
        }
    }
}
