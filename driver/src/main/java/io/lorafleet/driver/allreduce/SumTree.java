package io.lorafleet.driver.allreduce;

import io.lorafleet.driver.kernels.Kernels;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The one order in which the gradients of ranks 0..n-1 are added, whoever adds them. Node [lo, hi)
 * is the sum of its left child [lo, mid) and its right child [mid, hi), left + right, with mid = lo
 * plus the largest power of two below hi - lo; leaves are single ranks. A worker group that holds
 * the ranks of a node can add them itself and push that node's sum: the driver then adds the pushed
 * nodes in the same tree, so the result is bit-identical to the driver adding every rank's push
 * (float addition is not associative, so this is the only way two groupings can agree). Aligned
 * power-of-two groups (ranks 0-1, 2-3; or 0-3, 4-7) are single nodes; any other group is covered by
 * the few maximal nodes inside it ({@link #cover}), one push each.
 */
public final class SumTree {
  /** Ranks [lo, hi). */
  public record Node(int lo, int hi) implements Comparable<Node> {
    public Node {
      if (lo < 0 || hi <= lo) {
        throw new IllegalArgumentException("a tree node covers ranks [lo, hi) with 0 <= lo < hi but found [" + lo + ", " + hi + ")");
      }
    }

    public int size() {
      return hi - lo;
    }

    public boolean leaf() {
      return size() == 1;
    }

    public int mid() {
      return lo + Integer.highestOneBit(size() - 1);
    }

    public Node left() {
      return new Node(lo, mid());
    }

    public Node right() {
      return new Node(mid(), hi);
    }

    public boolean contains(int rank) {
      return rank >= lo && rank < hi;
    }

    @Override
    public int compareTo(Node o) {
      return Integer.compare(lo, o.lo);
    }

    @Override
    public String toString() {
      return leaf() ? "rank " + lo : "ranks " + lo + ".." + (hi - 1);
    }
  }

  private SumTree() {}

  public static Node root(int n) {
    return new Node(0, n);
  }

  /** Whether {@code node} is a node of the tree over n ranks. */
  public static boolean isNode(int n, Node node) {
    Node at = root(n);
    while (!at.equals(node)) {
      if (at.leaf() || node.lo() < at.lo() || node.hi() > at.hi()) {
        return false;
      }
      at = node.lo() < at.mid() ? at.left() : at.right();
      if (node.lo() < at.lo() || node.hi() > at.hi()) {
        return false; // it straddles this node's split
      }
    }
    return true;
  }

  /** The maximal nodes of the tree over n ranks made only of {@code members}' ranks, in rank order. */
  public static List<Node> cover(int n, java.util.BitSet members) {
    List<Node> out = new ArrayList<>();
    cover(root(n), members, out);
    return out;
  }

  private static void cover(Node at, java.util.BitSet members, List<Node> out) {
    int in = members.get(at.lo(), at.hi()).cardinality();
    if (in == at.size()) {
      out.add(at);
    } else if (in > 0) {
      cover(at.left(), members, out);
      cover(at.right(), members, out);
    }
  }

  /**
   * The sum of node {@code at} over the inputs, which are disjoint nodes covering it: either an
   * input itself, or its children's sums added left + right into the left one's buffer. Input
   * buffers are overwritten; the buffer holding the result is returned. Elements [from, to) only.
   */
  public static float[] sum(Node at, Map<Node, float[]> inputs, int from, int to) {
    float[] own = inputs.get(at);
    if (own != null) {
      return own;
    }
    if (at.leaf()) {
      throw new IllegalStateException("no input covers " + at);
    }
    float[] l = sum(at.left(), inputs, from, to);
    float[] r = sum(at.right(), inputs, from, to);
    Kernels.add(l, r, from, to);
    return l;
  }

  /** As {@link #sum(Node, Map, int, int)} for per-node scalars such as loss sums: left + right, in double. */
  public static double sum(Node at, Function<Node, Double> inputs) {
    Double own = inputs.apply(at);
    if (own != null) {
      return own;
    }
    if (at.leaf()) {
      throw new IllegalStateException("no input covers " + at);
    }
    return sum(at.left(), inputs) + sum(at.right(), inputs);
  }
}
