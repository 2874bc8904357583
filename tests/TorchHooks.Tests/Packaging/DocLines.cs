using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using TorchHooks.Tests.Build;

namespace TorchHooks.Tests.Packaging;

/// <summary>
/// The install lines a user copies from README.md and docs/, read from the files themselves (never retyped in a
/// test), so that the consumer tests run exactly what the text says.
/// </summary>
internal static class DocLines
{
    /// <summary>The package folder the docs' lines use; the tests put the feed they packed there.</summary>
    public const string PackageFolder = "~/torchhooks-packages";

    /// <summary>
    /// The <c>```sh</c> blocks under the heading <paramref name="heading"/> of <paramref name="file"/> (relative to the
    /// repository root), up to the next heading of the same or a higher level: each block's non-empty lines.
    /// </summary>
    public static IReadOnlyList<string[]> Blocks(string file, string heading)
    {
        var lines = File.ReadAllLines(Path.Combine(BuildTestSupport.RepoRoot, file));
        int start = Array.FindIndex(lines, l => l.TrimEnd() == heading);
        if (start < 0) throw new InvalidOperationException($"{file} has no heading '{heading}'");
        int level = heading.TakeWhile(c => c == '#').Count();
        var blocks = new List<string[]>();
        for (int i = start + 1; i < lines.Length; i++)
        {
            var l = lines[i];
            if (l.StartsWith('#') && l.TakeWhile(c => c == '#').Count() <= level && l.Contains(' ')) break;
            if (l.Trim() != "```sh") continue;
            var block = new List<string>();
            for (i++; i < lines.Length && lines[i].Trim() != "```"; i++)
                if (lines[i].Trim().Length > 0) block.Add(lines[i].Trim());
            blocks.Add(block.ToArray());
        }
        return blocks;
    }
}
