using System.Collections.Generic;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// A full backward hook, PyTorch's <c>hook(module, grad_input, grad_output) -&gt; tuple(Tensor) or None</c>:
    /// runs once per module call per backward, after every gradient w.r.t. the module's inputs is computed.
    /// <paramref name="grad_input"/> has one entry per input (positional argument) and <paramref name="grad_output"/>
    /// one per output (tuple element); <c>null</c> where PyTorch has <c>None</c> (a non-tensor, a tensor that needs
    /// no grad, an unused output). Return <c>null</c> to keep grad_input, or a list of the same length to replace it.
    /// </summary>
    /// <remarks>The tensors in the lists, and a replacement list's tensors, are valid during the hook only
    /// (TorchHooks disposes them once libtorch has taken them): keep one with <c>.detach().clone()</c>.</remarks>
    public delegate IReadOnlyList<Tensor?>? FullBackwardHook(torch.nn.Module module, IReadOnlyList<Tensor?> grad_input, IReadOnlyList<Tensor?> grad_output);

    /// <summary>
    /// A backward pre-hook, PyTorch's <c>hook(module, grad_output) -&gt; tuple[Tensor] or None</c>: runs when the
    /// gradients w.r.t. the module's outputs are computed, before the full backward hooks. Return <c>null</c> to keep
    /// grad_output, or a list of the same length to replace it (the module and its full hooks then see the replacement).
    /// </summary>
    /// <remarks>The tensors are valid during the hook only: keep one with <c>.detach().clone()</c>.</remarks>
    public delegate IReadOnlyList<Tensor?>? BackwardPreHook(torch.nn.Module module, IReadOnlyList<Tensor?> grad_output);
}
