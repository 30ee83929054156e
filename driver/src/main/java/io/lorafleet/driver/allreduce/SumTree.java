package io.lorafleet.driver.allreduce;

import io.lorafleet.driver.kernels.Kernels;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The one order in which the gradients of a step's slots 0..n-1 are added, whoever adds them. A
 * slot is one micro-batch of the global batch, its rows fixed by the data order alone, so the tree
 * does not depend on how many workers there are. Node [lo, hi) is the sum of its left child [lo,
 * mid) and its right child [mid, hi), left + right, with mid = lo plus the largest power of two
 * below hi - lo; leaves are single slots. A worker holding a range of slots adds each maximal node
 * inside it ({@link #cover}) itself and pushes those sums; an executor's leader does the same for
 * its workers' ranges, and the driver adds the pushed nodes in the same tree. So the sum is
 * bit-identical for any number of workers and any grouping (float addition is not associative, so
 * this is the only way two groupings can agree). A range of slots has at most about 2·log2(n)
 * maximal nodes; aligned power-of-two ranges (slots 0-1, 2-3; or 0-3, 4-7) are single nodes.
 */
public final class SumTree {
  /** Slots [lo, hi): a node of the tree, or (in a handshake) the range of slots a peer speaks for. */
  public record Node(int lo, int hi) implements Comparable<Node> {
    public Node {
      if (lo < 0 || hi <= lo) {
        throw new IllegalArgumentException("a range of slots [lo, hi) with 0 <= lo < hi but found [" + lo + ", " + hi + ")");
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

    public boolean contains(int slot) {
      return slot >= lo && slot < hi;
    }

    @Override
    public int compareTo(Node o) {
      return Integer.compare(lo, o.lo);
    }

    @Override
    public String toString() {
      return leaf() ? "slot " + lo : "slots " + lo + ".." + (hi - 1);
    }
  }

  private SumTree() {}

  public static Node root(int n) {
    return new Node(0, n);
  }

  /** Whether {@code node} is a node of the tree over n slots. */
  public static boolean isNode(int n, Node node) {
    return isNodeUnder(root(n), node);
  }

  /** Whether {@code node} is {@code top} or a node of the subtree under it. */
  public static boolean isNodeUnder(Node top, Node node) {
    Node at = top;
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

  /** The maximal nodes of the tree over n slots made only of {@code members}' slots, in slot order. */
  public static List<Node> cover(int n, java.util.BitSet members) {
    List<Node> out = new ArrayList<>();
    cover(root(n), members, out);
    return out;
  }

  /** The maximal nodes of the tree over n slots inside {@code range}, in slot order: what a peer holding that range pushes. */
  public static List<Node> cover(int n, Node range) {
    if (range.hi() > n) {
      throw new IllegalArgumentException(range + " lies outside the " + n + " slots of the tree");
    }
    java.util.BitSet members = new java.util.BitSet(n);
    members.set(range.lo(), range.hi());
    return cover(n, members);
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
